// Atari frame -> the 80x80 binary image of the tutorial, and the sparse frame difference.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "fastpong/sparse.hpp"

namespace fastpong {

constexpr int kFrameHeight = 210;
constexpr int kFrameWidth = 160;
constexpr int kFrameChannels = 3;
constexpr int kFrameBytes = kFrameHeight * kFrameWidth * kFrameChannels;
constexpr int kCropTop = 35;     // first row kept (score board above)
constexpr int kCropBottom = 195; // one past the last row kept (bottom border below)
constexpr int kImageSide = 80;   // (195 - 35) / 2 rows, 160 / 2 columns
constexpr int kImagePixels = kImageSide * kImageSide;
constexpr uint8_t kBackgroundA = 144;  // the two background shades of Pong's red channel
constexpr uint8_t kBackgroundB = 109;

// One frame to 6400 values in {0, 1}: crop, keep every second row/column of channel 0, erase the
// background. Assumes valid arguments: `frame` holds kFrameBytes, `image` kImagePixels.
void preprocess_frame(const uint8_t* frame, float* image);
// The same image as bytes 0/1 (kImagePixels of them), for kernels that build on it.
void binarize_frame(const uint8_t* frame, uint8_t* image);
// The same for n frames stored back to back, spread over threads.
void preprocess_frames(const uint8_t* frames, int64_t n, float* images);

// Preprocessing (here and in FrameDifferencer) runs the best SIMD kernel the CPU has. For tests:
// the kernels this CPU runs, best first ("avx512vbmi", "avx2", "scalar"), the one in use, and a
// switch to another for all later calls (false, and no change, for a name not in the list).
std::vector<std::string> preprocess_kernels();
std::string preprocess_kernel();
bool use_preprocess_kernel(const std::string& name);

// Keeps the previous binary image of each of n environments and turns the next frames into the
// network's input, cur - prev, as sparse rows of +-1. The first frame after construction or
// reset(i) yields an empty row, as the tutorial's zero input for an episode's first step.
class FrameDifferencer {
 public:
  explicit FrameDifferencer(int64_t num_envs);
  int64_t num_envs() const { return num_envs_; }
  // frames: num_envs frames back to back. Writes one sparse row per environment into `out`.
  void step(const uint8_t* frames, SparseRows& out);
  void reset(int64_t env);
  void reset_all();

 private:
  int64_t num_envs_;
  std::vector<uint8_t> previous_;      // num_envs * kImagePixels binary images
  std::vector<uint8_t> has_previous_;  // per environment
  std::vector<SparseRows> scratch_;    // per-environment rows, merged after the parallel loop
};

}  // namespace fastpong
