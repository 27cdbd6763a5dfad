// The tutorial's RMSProp gradient-ascent step.
#pragma once
#include <cstdint>

#include "fastpong/policy.hpp"

namespace fastpong {

constexpr float kRmsEpsilon = 1e-5f;

// For each weight: cache = decay * cache + (1 - decay) * g^2; w += lr * g / (sqrt(cache) + eps);
// g = 0. Assumes the three tensors have the same shapes.
void rmsprop_step(PolicyTensors& weights, PolicyTensors& grads, PolicyTensors& cache,
                  float learning_rate, double decay_rate);

// The same with the gradient in the tutorial's layout, grad_w1 (hidden, input_size) and grad_w2
// (hidden,) float32, which are zeroed: no GradientBuffer to copy it into first.
void rmsprop_step_transposed(PolicyTensors& weights, float* grad_w1, float* grad_w2,
                             PolicyTensors& cache, float learning_rate, double decay_rate);

// The same on raw arrays of n floats.
void rmsprop_step(float* weights, float* grads, float* cache, int64_t n, float learning_rate,
                  double decay_rate);

}  // namespace fastpong
