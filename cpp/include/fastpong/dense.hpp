// The MIT lab's dense softmax policy: ReLU hidden layers with biases, then logits over actions.
#pragma once
#include <cstdint>
#include <vector>

namespace fastpong {

// Pointers to one value per parameter, layer by layer in Keras' layout: kernels[l] is
// (inputs of l, outputs of l) row-major, biases[l] has one value per output. The last layer is
// the logits layer. Used for the weights, for gradients and for any tensor shaped like them.
struct DenseTensors {
  std::vector<float*> kernels;
  std::vector<float*> biases;
};

class DensePolicy {
 public:
  // widths: input size, then each hidden layer's units, then the number of actions (all >= 1).
  explicit DensePolicy(std::vector<int64_t> widths);
  int64_t input_size() const { return widths_.front(); }
  int64_t num_actions() const { return widths_.back(); }
  int64_t num_layers() const { return static_cast<int64_t>(widths_.size()) - 1; }
  const std::vector<int64_t>& widths() const { return widths_; }
  // Layer l maps widths[l] values to widths[l + 1]; its parameters live in this object.
  float* kernel(int64_t l) { return kernels_[l].data(); }
  float* bias(int64_t l) { return biases_[l].data(); }
  const float* kernel(int64_t l) const { return kernels_[l].data(); }
  const float* bias(int64_t l) const { return biases_[l].data(); }
  DenseTensors tensors();

  // n observations x[n * input_size] -> log-probabilities and/or probabilities [n * actions]
  // (either may be null). Rows are spread over threads when the work pays; each row's result
  // is the same whatever the thread count. Assumes valid arguments.
  void forward(const float* x, int64_t n, float* log_probs, float* probs) const;

  // grads += scale * sum_t advantages[t] * d log pi(actions[t] | x[t]) / d theta, for every
  // kernel and bias, over `steps` stored observations (the forward pass is recomputed). This is
  // the ascent direction of J = scale * sum_t A_t log pi(a_t|s_t), minus the gradient of the
  // lab's loss when scale = 1 / T. Sums over steps run in step order whatever the thread count.
  // With `input_grad` (steps * input_size), also writes d J / d x[t] there (overwritten, not
  // added): what a network below this one (the lab's CNN) backpropagates from.
  // With `entropy_coef` beta > 0, J gains scale * beta * sum_t H(pi(.|x[t])), the entropy bonus
  // that keeps a policy from collapsing onto one action (A3C's; dH/dz_j = -p_j (log p_j + H)).
  // Assumes valid arguments: actions in [0, num_actions), grads shaped like the parameters.
  void accumulate_gradient(const float* x, const int64_t* actions, const float* advantages,
                           int64_t steps, float scale, const DenseTensors& grads,
                           float* input_grad = nullptr, float entropy_coef = 0.0f) const;

 private:
  std::vector<int64_t> widths_;
  std::vector<std::vector<float>> kernels_;
  std::vector<std::vector<float>> biases_;
};

// For each row of n: the first action j with u[i] < probs[i, 0] + ... + probs[i, j] (the inverse
// CDF, summed in float32 in action order), or the last action of nonzero probability when rounding
// leaves the sum below u. Deterministic given the uniforms. Assumes probabilities >= 0, u in [0, 1]; a u of
// 1.0f (a float64 uniform below 1, rounded) is taken as the largest float below 1.
void sample_categorical(const float* probs, int64_t n, int64_t num_actions, const float* uniforms,
                        int32_t* actions);

}  // namespace fastpong
