#include "fastpong/rmsprop.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "fastpong/parallel.hpp"

namespace fastpong {
namespace {

FASTPONG_SIMD_CLONES
void rmsprop_range(float* w, float* g, float* cache, int64_t n, float learning_rate,
                   double decay_rate) {
  // 1 - decay in double: in float32 it would inherit decay's rounding magnified 1 / (1 - decay)
  // times (1 - 0.99f is 0.0099999905, off by 8 ulps).
  const float keep = static_cast<float>(decay_rate);
  const float mix = static_cast<float>(1.0 - decay_rate);
  // cache = decay * cache + (1 - decay) g^2;  w += lr g / (sqrt(cache) + eps);  g = 0
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i];
    const float ci = keep * cache[i] + mix * gi * gi;
    cache[i] = ci;
    w[i] += learning_rate * gi / (std::sqrt(ci) + kRmsEpsilon);
    g[i] = 0.0f;
  }
}

// Below this many weights the step stays on one thread. It is bound by memory bandwidth (three
// arrays read and written: one core does the tutorial's 1.28M weights, 31 MB of traffic, in
// ~0.6-0.7 ms). Measured on the 2-core machine, a second thread saved ~0.2 ms of that when the
// other core was idle, and cost 1-20 ms when another process kept it busy (waking the thread then
// waits for the scheduler). 4M weights (~2 ms) is where the saving is worth that risk.
constexpr int64_t kParallelMinWeights = int64_t{1} << 22;

}  // namespace

void rmsprop_step(float* weights, float* grads, float* cache, int64_t n, float learning_rate,
                  double decay_rate) {
  run_in_parts(parts_for(n >= kParallelMinWeights), [&](int part, int parts) {
    // Contiguous chunks, one per part, each a multiple of 16 floats so no two threads share a
    // cache line.
    const int64_t chunk = ((n + parts - 1) / parts + 15) / 16 * 16;
    const int64_t begin = std::min<int64_t>(n, part * chunk);
    const int64_t end = std::min<int64_t>(n, begin + chunk);
    rmsprop_range(weights + begin, grads + begin, cache + begin, end - begin, learning_rate,
                  decay_rate);
  });
}

void rmsprop_step(PolicyTensors& weights, PolicyTensors& grads, PolicyTensors& cache,
                  float learning_rate, double decay_rate) {
  rmsprop_step(weights.w1t.data(), grads.w1t.data(), cache.w1t.data(),
               static_cast<int64_t>(weights.w1t.size()), learning_rate, decay_rate);
  rmsprop_step(weights.w2.data(), grads.w2.data(), cache.w2.data(),
               static_cast<int64_t>(weights.w2.size()), learning_rate, decay_rate);
}

void rmsprop_step_transposed(PolicyTensors& weights, float* grad_w1, float* grad_w2,
                             PolicyTensors& cache, float learning_rate, double decay_rate) {
  const int64_t hidden = weights.hidden, input_size = weights.input_size;
  // The weights are stored transposed (w1t, input_size x hidden); the gradient comes in the
  // tutorial's (hidden, input_size). A slab of kPixels of its columns is copied, transposed, into
  // a buffer that stays in cache (and zeroed where it lies), and the step runs along the buffer's
  // contiguous rows of `hidden`: one pass over each of the four arrays, instead of a copy into a
  // GradientBuffer (and a check of it) first.
  constexpr int64_t kPixels = 16;
  std::vector<float> slab(static_cast<size_t>(kPixels * hidden));
  for (int64_t i0 = 0; i0 < input_size; i0 += kPixels) {
    const int64_t pixels = std::min(kPixels, input_size - i0);
    for (int64_t j = 0; j < hidden; ++j) {
      float* g = grad_w1 + j * input_size + i0;
      for (int64_t ii = 0; ii < pixels; ++ii) slab[ii * hidden + j] = g[ii];
      std::fill(g, g + pixels, 0.0f);
    }
    for (int64_t ii = 0; ii < pixels; ++ii) {
      const int64_t at = (i0 + ii) * hidden;
      rmsprop_range(weights.w1t.data() + at, slab.data() + ii * hidden, cache.w1t.data() + at,
                    hidden, learning_rate, decay_rate);
    }
  }
  rmsprop_step(weights.w2.data(), grad_w2, cache.w2.data(), hidden, learning_rate, decay_rate);
}

}  // namespace fastpong
