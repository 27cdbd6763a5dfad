#include "fastpong/adam.hpp"

#include <algorithm>
#include <cmath>

#include "fastpong/parallel.hpp"

namespace fastpong {
namespace {

FASTPONG_SIMD_CLONES
void adam_range(float* w, float* g, float* m, float* v, int64_t n, float alpha, float mix_1,
                float mix_2, float epsilon) {
  // m += (1 - b1)(g - m);  v += (1 - b2)(g^2 - v);  w += alpha m / (sqrt(v) + eps);  g = 0
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i];
    const float mi = m[i] + mix_1 * (gi - m[i]);
    const float vi = v[i] + mix_2 * (gi * gi - v[i]);
    m[i] = mi;
    v[i] = vi;
    w[i] += alpha * mi / (std::sqrt(vi) + epsilon);
    g[i] = 0.0f;
  }
}

// Like RMSProp's step (rmsprop.cpp), bound by memory bandwidth, here five arrays of traffic per
// weight: threads only pay for millions of weights, and only when a core is free.
constexpr int64_t kParallelMinWeights = int64_t{1} << 22;

}  // namespace

void adam_step(float* weights, float* grads, float* m, float* v, int64_t n,
               const AdamSettings& s) {
  const double t = static_cast<double>(s.step);
  const float alpha = static_cast<float>(s.learning_rate * std::sqrt(1.0 - std::pow(s.beta_2, t)) /
                                         (1.0 - std::pow(s.beta_1, t)));
  const float mix_1 = static_cast<float>(1.0 - s.beta_1);
  const float mix_2 = static_cast<float>(1.0 - s.beta_2);
  const float epsilon = static_cast<float>(s.epsilon);
  run_in_parts(parts_for(n >= kParallelMinWeights), [&](int part, int parts) {
    // Chunks of whole cache lines (16 floats), one per part.
    const int64_t chunk = ((n + parts - 1) / parts + 15) / 16 * 16;
    const int64_t begin = std::min<int64_t>(n, part * chunk);
    const int64_t end = std::min<int64_t>(n, begin + chunk);
    adam_range(weights + begin, grads + begin, m + begin, v + begin, end - begin, alpha, mix_1,
               mix_2, epsilon);
  });
}

void adam_step(PolicyTensors& weights, PolicyTensors& grads, PolicyTensors& m, PolicyTensors& v,
               const AdamSettings& settings) {
  adam_step(weights.w1t.data(), grads.w1t.data(), m.w1t.data(), v.w1t.data(),
            static_cast<int64_t>(weights.w1t.size()), settings);
  adam_step(weights.w2.data(), grads.w2.data(), m.w2.data(), v.w2.data(),
            static_cast<int64_t>(weights.w2.size()), settings);
}

}  // namespace fastpong
