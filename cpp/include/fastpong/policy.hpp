// The tutorial's 2-layer policy: h = relu(W1 x), p = sigmoid(W2 . h), stored for sparse inputs.
#pragma once
#include <cstdint>
#include <vector>

#include "fastpong/episode.hpp"
#include "fastpong/sparse.hpp"

namespace fastpong {

// Gradients (or any tensors) shaped like the policy's weights, in the policy's layout.
struct PolicyTensors {
  PolicyTensors(int64_t input_size, int64_t hidden);
  int64_t input_size;
  int64_t hidden;
  // W1 is kept transposed, input_size rows of `hidden` floats: a nonzero input pixel i touches
  // one contiguous row w1t[i * hidden ...], which makes sparse forward and backward streaming.
  std::vector<float> w1t;
  std::vector<float> w2;
  void zero();
};

class Policy {
 public:
  Policy(int64_t input_size, int64_t hidden);
  int64_t input_size() const { return weights_.input_size; }
  int64_t hidden() const { return weights_.hidden; }
  PolicyTensors& weights() { return weights_; }
  const PolicyTensors& weights() const { return weights_; }

  // n dense inputs x[n * input_size] -> p[n], h[n * hidden]. Zero pixels are skipped, so the
  // tutorial's mostly-zero frame differences cost what their nonzeros cost. Returns -1, or the
  // flat index of x's first NaN or infinity (p and h are then unspecified).
  int64_t forward_dense(const float* x, int64_t n, float* p, float* h) const;
  // One output row per input row.
  void forward_sparse(const SparseRows& x, float* p, float* h) const;

  // Tutorial backward pass over T steps with dense inputs, in the tutorial's layout: dw1
  // (hidden, input_size), which must be zeroed, and dw2 (hidden,), both written. eph: T * hidden,
  // epx: T * input_size, epdlogp: T. Checks epx for NaN and infinity in the pass that reads it:
  // returns -1, or the flat index of epx's first non-finite value (dw1, dw2 then unspecified).
  int64_t backward_dense(const float* eph, const float* epx, const float* epdlogp, int64_t steps,
                         float* dw1, float* dw2) const;
  // Backward pass over an episode's sparse record with dlogp[t] scaled by advantages[t], added
  // into `grads` (the tutorial's grad_buffer += grad, without materializing grad).
  void accumulate_gradient(const EpisodeBuffer& episode, const float* advantages,
                           PolicyTensors& grads) const;

 private:
  // dh[t] = epdlogp[t] * W2 where h > 0, the shared middle of both backward passes; adds dW2.
  void hidden_gradient(const float* eph, const float* epdlogp, int64_t steps, float* dh,
                       float* dw2) const;
  PolicyTensors weights_;
};

}  // namespace fastpong
