#include "fastpong/lab_frames.hpp"

#include "fastpong/frames.hpp"
#include "fastpong/parallel.hpp"

namespace fastpong {
namespace {

static_assert(kImageSide == 2 * kLabSide, "the lab's image halves the tutorial's");

// Dilating by 3x3 and then keeping every second row and column means that lab pixel (R, C) is the
// OR of tutorial pixels (2R - 1 .. 2R + 1, 2C - 1 .. 2C + 1), those outside the image being 0.
// Done in two separable passes of byte ORs: three rows, then three columns.
FASTPONG_SIMD_CLONES
void lab_bytes(const uint8_t* frame, uint8_t* lab) {
  uint8_t image[kImagePixels];
  binarize_frame(frame, image);
  uint8_t rows[kLabSide][kImageSide];
  for (int r = 0; r < kLabSide; ++r) {
    const uint8_t* mid = image + (2 * r) * kImageSide;
    const uint8_t* above = r > 0 ? mid - kImageSide : mid;  // row -1 is outside: reuse row 0
    const uint8_t* below = mid + kImageSide;                 // 2r + 1 <= 79 always
    // rows[r][c] = image[2r - 1][c] | image[2r][c] | image[2r + 1][c]
#pragma omp simd
    for (int c = 0; c < kImageSide; ++c) rows[r][c] = above[c] | mid[c] | below[c];
  }
  for (int r = 0; r < kLabSide; ++r) {
    const uint8_t* row = rows[r];
    uint8_t* out = lab + r * kLabSide;
    out[0] = row[0] | row[1];  // column -1 is outside
    // out[c] = row[2c - 1] | row[2c] | row[2c + 1]
    for (int c = 1; c < kLabSide; ++c) out[c] = row[2 * c - 1] | row[2 * c] | row[2 * c + 1];
  }
}

// Work below which the batched kernels stay on one thread: a change takes about 2 us.
constexpr int64_t kParallelMinFrames = 16;

}  // namespace

void lab_preprocess(const uint8_t* frame, float* image) {
  uint8_t lab[kLabPixels];
  lab_bytes(frame, lab);
  for (int i = 0; i < kLabPixels; ++i) image[i] = lab[i];
}

void lab_preprocess_frames(const uint8_t* frames, int64_t n, float* images) {
  parallel_for(n, n >= kParallelMinFrames, [&](int64_t i) {
    lab_preprocess(frames + i * kFrameBytes, images + i * kLabPixels);
  });
}

void lab_frame_change(const uint8_t* prev_frame, const uint8_t* frame, float* change) {
  uint8_t prev[kLabPixels], curr[kLabPixels];
  lab_bytes(prev_frame, prev);
  lab_bytes(frame, curr);
  for (int i = 0; i < kLabPixels; ++i) {
    change[i] = static_cast<float>(static_cast<int>(prev[i]) - static_cast<int>(curr[i]));
  }
}

void lab_frame_changes(const uint8_t* prev_frames, const uint8_t* frames, int64_t n,
                       float* changes) {
  parallel_for(n, n >= kParallelMinFrames, [&](int64_t i) {
    lab_frame_change(prev_frames + i * kFrameBytes, frames + i * kFrameBytes,
                     changes + i * kLabPixels);
  });
}

}  // namespace fastpong
