// What an episode leaves behind for the backward pass, kept small: each step's input as its
// nonzero columns and signs (about 26 of 6400 in Pong), the hidden activations, dlogp and reward.
#pragma once
#include <cstdint>
#include <vector>

#include "fastpong/sparse.hpp"

namespace fastpong {

class EpisodeBuffer {
 public:
  EpisodeBuffer(int64_t input_size, int64_t hidden);
  int64_t input_size() const { return input_size_; }
  int64_t hidden() const { return hidden_; }
  int64_t steps() const { return static_cast<int64_t>(dlogps_.size()); }

  // Appends one step: row `r` of `inputs`, the hidden activations h[hidden], and y - p.
  // Its reward starts at 0 until set_last_reward. Assumes valid arguments.
  void append(const SparseRows& inputs, int64_t r, const float* h, float dlogp);
  // The reward that followed the last appended step.
  void set_last_reward(float reward);
  void clear();

  const SparseRows& inputs() const { return inputs_; }
  const std::vector<float>& hidden_states() const { return hidden_states_; }
  const std::vector<float>& dlogps() const { return dlogps_; }
  const std::vector<float>& rewards() const { return rewards_; }
  // Bytes held by the stored steps (not the reserved capacity).
  int64_t nbytes() const;

 private:
  int64_t input_size_;
  int64_t hidden_;
  SparseRows inputs_;
  std::vector<float> hidden_states_;  // steps * hidden
  std::vector<float> dlogps_;
  std::vector<float> rewards_;
};

// One EpisodeBuffer per environment, filled a step at a time for all of them.
class EpisodeBatch {
 public:
  EpisodeBatch(int64_t num_envs, int64_t input_size, int64_t hidden);
  int64_t num_envs() const { return static_cast<int64_t>(episodes_.size()); }
  // inputs: one row per environment; h: num_envs * hidden; dlogps: num_envs.
  void append(const SparseRows& inputs, const float* h, const float* dlogps);
  void set_last_rewards(const float* rewards);
  EpisodeBuffer& episode(int64_t env) { return episodes_[env]; }

 private:
  std::vector<EpisodeBuffer> episodes_;
};

}  // namespace fastpong
