#include "fastpong/frames.hpp"

#include <algorithm>
#include <cstring>

#include "fastpong/parallel.hpp"

namespace fastpong {
namespace {

// The pixel (r, c) of the 80x80 image is the red channel of frame pixel (35 + 2r, 2c).
inline const uint8_t* image_row_start(const uint8_t* frame, int r) {
  return frame + (kCropTop + 2 * r) * kFrameWidth * kFrameChannels;
}

// Paddles and ball are whatever is neither background shade nor black.
inline uint8_t is_object(uint8_t red) {
  return static_cast<uint8_t>(red != 0 && red != kBackgroundA && red != kBackgroundB);
}

template <typename Out>
void binarize(const uint8_t* frame, Out* image) {
  for (int r = 0; r < kImageSide; ++r) {
    const uint8_t* row = image_row_start(frame, r);
    Out* out = image + r * kImageSide;
#pragma omp simd
    for (int c = 0; c < kImageSide; ++c) {
      out[c] = static_cast<Out>(is_object(row[2 * c * kFrameChannels]));
    }
  }
}

// Appends the nonzero entries of cur - prev (binary images) to `row`. Frame differences are
// almost all zero, so 8 pixels are compared at once and equal words skipped.
void append_difference(const uint8_t* cur, const uint8_t* prev, SparseRows& row) {
  static_assert(kImagePixels % 8 == 0, "image size must be a multiple of 8");
  for (int i = 0; i < kImagePixels; i += 8) {
    uint64_t a, b;
    std::memcpy(&a, cur + i, 8);
    std::memcpy(&b, prev + i, 8);
    if (a == b) continue;
    for (int k = i; k < i + 8; ++k) {
      const int d = static_cast<int>(cur[k]) - static_cast<int>(prev[k]);
      if (d != 0) {
        row.indices.push_back(k);
        row.values.push_back(static_cast<int8_t>(d));
      }
    }
  }
}

}  // namespace

void preprocess_frame(const uint8_t* frame, float* image) { binarize(frame, image); }

void preprocess_frames(const uint8_t* frames, int64_t n, float* images) {
  const bool parallel = n * kImagePixels >= FASTPONG_PARALLEL_MIN_WORK;
#pragma omp parallel for num_threads(num_threads()) if (parallel) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    binarize(frames + i * kFrameBytes, images + i * kImagePixels);
  }
}

FrameDifferencer::FrameDifferencer(int64_t num_envs)
    : num_envs_(num_envs),
      previous_(static_cast<size_t>(num_envs) * kImagePixels, 0),
      has_previous_(static_cast<size_t>(num_envs), 0),
      scratch_(static_cast<size_t>(num_envs)) {}

void FrameDifferencer::reset(int64_t env) { has_previous_[env] = 0; }

void FrameDifferencer::reset_all() { std::fill(has_previous_.begin(), has_previous_.end(), 0); }

void FrameDifferencer::step(const uint8_t* frames, SparseRows& out) {
  const bool parallel = num_envs_ * kImagePixels >= FASTPONG_PARALLEL_MIN_WORK;
#pragma omp parallel for num_threads(num_threads()) if (parallel) schedule(static)
  for (int64_t e = 0; e < num_envs_; ++e) {
    uint8_t current[kImagePixels];
    binarize(frames + e * kFrameBytes, current);
    uint8_t* previous = previous_.data() + e * kImagePixels;
    SparseRows& row = scratch_[e];
    row.clear();
    if (has_previous_[e]) append_difference(current, previous, row);
    row.offsets.push_back(row.nonzeros());
    std::memcpy(previous, current, kImagePixels);
    has_previous_[e] = 1;
  }
  out.clear();
  for (int64_t e = 0; e < num_envs_; ++e) out.append_row(scratch_[e], 0);
}

void SparseRows::append_row(const SparseRows& other, int64_t r) {
  const int64_t begin = other.offsets[r];
  const int64_t end = other.offsets[r + 1];
  indices.insert(indices.end(), other.indices.begin() + begin, other.indices.begin() + end);
  values.insert(values.end(), other.values.begin() + begin, other.values.begin() + end);
  offsets.push_back(nonzeros());
}

}  // namespace fastpong
