// The MIT lab's CNN Pong policy: four 'same' stride-2 ReLU convolutions over the 40x40 frame
// change, Flatten (NHWC), Dense 128 ReLU, Dense 6 logits. Keras semantics and layouts throughout.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "fastpong/dense.hpp"

namespace fastpong {

// One 'same' convolution along one axis, TensorFlow's rule (kernel_shape_util.cc): out =
// ceil(in / stride), total padding max((out - 1) * stride + kernel - in, 0), the smaller half
// before (so an odd total puts the extra row/column at the bottom/right).
struct SamePadding {
  SamePadding(int64_t in, int64_t kernel, int64_t stride);
  int64_t out, before, after;
};

class ConvPolicy {
 public:
  static constexpr int kConvLayers = 4;
  static constexpr int kTensors = 2 * (kConvLayers + 2);  // a kernel and a bias per layer
  static constexpr int64_t kInputSide = 40;
  static constexpr int64_t kInputSize = kInputSide * kInputSide;
  static constexpr int64_t kHidden = 128;
  static constexpr int64_t kActions = 6;

  ConvPolicy();
  // Tensor i (Keras' order: conv2d_0/kernel, conv2d_0/bias, ..., dense_0/..., logits/...).
  static const std::string& tensor_name(int i);
  static const std::vector<int64_t>& tensor_shape(int i);
  static int64_t tensor_size(int i);
  float* tensor(int i) { return tensors_[i]; }
  const float* tensor(int i) const { return tensors_[i]; }

  // n frame changes x[n * kInputSize] (row-major 40x40) -> log-probabilities and/or
  // probabilities [n * kActions] (either may be null). Frames are spread over threads when it
  // pays; each frame's result is the same whatever the thread count. Assumes valid arguments.
  void forward(const float* x, int64_t n, float* log_probs, float* probs) const;

  // grads[i] += scale * sum_t advantages[t] * d log pi(actions[t] | x[t]) / d tensor i: the
  // ascent direction of J = scale * sum_t A_t log pi(a_t|s_t) (minus the gradient of the lab's
  // loss for scale = 1 / T). The forward pass is recomputed, kStepChunk steps at a time, so the
  // memory stays bounded for thousands of steps; sums run in a fixed order whatever the thread
  // count (each chunk's into a share of its own, the shares added in chunk order). With
  // entropy_coef beta, J also has scale * beta * sum_t H(pi(.|x[t])) (the entropy bonus,
  // DensePolicy::accumulate_gradient). Assumes valid arguments: actions in [0, kActions), grads
  // shaped like the tensors.
  void accumulate_gradient(const float* x, const int64_t* actions, const float* advantages,
                           int64_t steps, float scale,
                           const std::array<float*, kTensors>& grads,
                           float entropy_coef = 0.0f) const;

  // Width of the flattened conv output (576): what the dense layers above the convolutions see.
  static int64_t feature_size();

  // n frame changes -> their flattened conv output flat[n * feature_size()] (post-ReLU, NHWC
  // order, Keras' Flatten): the trunk an actor-critic shares between its policy and value heads.
  // The activations forward() feeds its dense head. Assumes valid arguments.
  // With keep, the batch's activations are kept (with a copy of x) for the next
  // accumulate_feature_gradient on the same frames and weights, which then skips its forward pass.
  void features(const float* x, int64_t n, float* flat, bool keep = false) const;
  // The kept activations' identity, for the bindings' thread guard (written by features(keep)).
  const void* kept_activations() const { return &kept_; }

  // grads[i] += d/d tensor i of sum_t flat_grad[t] . features(x[t]), for the conv tensors only
  // (i < 2 * kConvLayers; the dense tensors' entries are not read or written): the backward pass
  // through the trunk from any gradient at its output, e.g. one from a policy head and a value
  // head together. The forward pass is recomputed, kStepChunk steps at a time, unless the last
  // features(keep = true) call saw the same frames with the same conv weights (then its kept
  // activations are used: the same bits); sums run in a fixed order whatever the thread count.
  // Assumes valid arguments.
  void accumulate_feature_gradient(const float* x, const float* flat_grad, int64_t steps,
                                   const std::array<float*, kTensors>& grads) const;

  // Steps a backward pass takes at a time (their activations, ~13 MB, kept at once): more steps
  // than this go to threads a chunk at a time, each chunk whole (see accumulate_by_chunks in
  // conv.cpp); fewer go in one piece whose layers share the threads. Small enough that a game's
  // few hundred steps keep two threads busy, large enough that a chunk's work dwarfs its
  // bookkeeping.
  static constexpr int64_t kStepChunk = 128;

 private:
  // The activations of an all-zero frame, which most conv outputs of a frame change equal (see
  // conv.cpp), with the conv parameters they were computed from: recomputed only when those
  // change, which in training is once per update, not once per step.
  struct Background;
  std::shared_ptr<const Background> background() const;

  std::vector<float> conv_parameters_;  // the conv kernels and biases, back to back
  DensePolicy head_;                    // Dense 128 ReLU, Dense 6 logits (dense.cpp)
  std::array<float*, kTensors> tensors_{};
  mutable std::mutex background_mutex_;
  mutable std::shared_ptr<const Background> background_;
  // The activations of the last features(keep = true) batch (see conv.cpp).
  struct Kept;
  mutable std::shared_ptr<Kept> kept_;
};

// Names of the GEMM micro-kernel variants this CPU runs, best first, the one in use, and a switch
// for tests and benchmarks (false, and no change, for a name not in the list).
std::vector<std::string> conv_kernels();
std::string conv_kernel();
bool use_conv_kernel(const std::string& name);

// Forward passes of two frames or more copy the conv outputs whose window sees no change from
// the zero frame's activations instead of computing them (the same bits), and build conv2d_1's
// and conv2d_2's other outputs from the zero frame's pre-activations plus the change (the same
// values to float32 rounding). A switch for tests and benchmarks; on by default.
void set_zero_frame_skipping(bool on);
bool zero_frame_skipping();

}  // namespace fastpong
