// The MIT lab's Pong input: the tutorial's 80x80 binary image, 3x3-dilated, every second row and
// column (40x40), and the frame change prev - curr that the CNN sees.
#pragma once
#include <cstdint>

namespace fastpong {

constexpr int kLabSide = 40;
constexpr int kLabPixels = kLabSide * kLabSide;

// One (210, 160, 3) uint8 frame -> kLabPixels values in {0, 1}. Assumes valid arguments.
void lab_preprocess(const uint8_t* frame, float* image);
// n frames back to back -> n images, spread over threads when it pays.
void lab_preprocess_frames(const uint8_t* frames, int64_t n, float* images);

// change = lab image of prev_frame - lab image of frame, in {-1, 0, 1} (the lab's sign).
void lab_frame_change(const uint8_t* prev_frame, const uint8_t* frame, float* change);
// n pairs of frames back to back -> n changes; each row's result is the same on any thread.
void lab_frame_changes(const uint8_t* prev_frames, const uint8_t* frames, int64_t n,
                       float* changes);

}  // namespace fastpong
