// Adam as Keras 3 applies it (keras.optimizers.Adam), as a gradient-ascent step.
#pragma once
#include <cstdint>

#include "fastpong/policy.hpp"

namespace fastpong {

constexpr double kAdamEpsilon = 1e-7;  // Keras' default

struct AdamSettings {
  double learning_rate = 1e-3;
  double beta_1 = 0.9;
  double beta_2 = 0.999;
  double epsilon = kAdamEpsilon;
  int64_t step = 1;  // t of this update, counted from 1 (Keras' iterations + 1)
};

// Keras 3's update_step, with the sign turned for ascent (grads point uphill):
//   m += (1 - beta_1) (g - m);   v += (1 - beta_2) (g^2 - v)
//   alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)
//   w += alpha * m / (sqrt(v) + epsilon);   g = 0
// epsilon is Kingma and Ba's "epsilon hat": it is added to sqrt(v), not to the bias-corrected
// sqrt(v_hat), so this equals the textbook w += lr * m_hat / (sqrt(v_hat) + eps') with
// eps' = epsilon / sqrt(1 - beta_2^t). alpha and the (1 - beta) factors are computed in double.
// Assumes the four arrays hold n floats each.
void adam_step(float* weights, float* grads, float* m, float* v, int64_t n,
               const AdamSettings& settings);

// The same over the tutorial policy's tensors (all four shaped alike).
void adam_step(PolicyTensors& weights, PolicyTensors& grads, PolicyTensors& m, PolicyTensors& v,
               const AdamSettings& settings);

}  // namespace fastpong
