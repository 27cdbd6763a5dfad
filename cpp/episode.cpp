#include "fastpong/episode.hpp"

#include <algorithm>

namespace fastpong {

EpisodeBuffer::EpisodeBuffer(int64_t input_size, int64_t hidden)
    : input_size_(input_size), hidden_(hidden) {}

void EpisodeBuffer::append(const SparseRows& inputs, int64_t r, const float* h, float dlogp) {
  inputs_.append_row(inputs, r);
  hidden_states_.insert(hidden_states_.end(), h, h + hidden_);
  dlogps_.push_back(dlogp);
  rewards_.push_back(0.0f);
}

void EpisodeBuffer::set_last_reward(float reward) { rewards_.back() = reward; }

void EpisodeBuffer::clear() {
  inputs_.clear();
  hidden_states_.clear();
  dlogps_.clear();
  rewards_.clear();
}

int64_t EpisodeBuffer::nbytes() const {
  const auto bytes = [](const auto& v) {
    return static_cast<int64_t>(v.size() * sizeof(typename std::decay_t<decltype(v)>::value_type));
  };
  return bytes(inputs_.offsets) + bytes(inputs_.indices) + bytes(inputs_.values) +
         bytes(hidden_states_) + bytes(dlogps_) + bytes(rewards_);
}

EpisodeBatch::EpisodeBatch(int64_t num_envs, int64_t input_size, int64_t hidden)
    : episodes_(static_cast<size_t>(num_envs), EpisodeBuffer(input_size, hidden)) {}

void EpisodeBatch::append(const SparseRows& inputs, const float* h, const float* dlogps) {
  for (int64_t e = 0; e < num_envs(); ++e) {
    EpisodeBuffer& episode = episodes_[e];
    episode.append(inputs, e, h + e * episode.hidden(), dlogps[e]);
  }
}

void EpisodeBatch::set_last_rewards(const float* rewards) {
  for (int64_t e = 0; e < num_envs(); ++e) episodes_[e].set_last_reward(rewards[e]);
}

}  // namespace fastpong
