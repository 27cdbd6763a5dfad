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

// The same on raw arrays of n floats.
void rmsprop_step(float* weights, float* grads, float* cache, int64_t n, float learning_rate,
                  double decay_rate);

}  // namespace fastpong
