#include "fastpong/rmsprop.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "fastpong/parallel.hpp"

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define FASTPONG_RMSPROP_X86 1
#else
#define FASTPONG_RMSPROP_X86 0
#endif

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

namespace {

// Pixels (columns of the tutorial's gradient) per slab: the slab of kSlabPixels x hidden floats
// (51 KB for 200 hidden units) stays in L2 while the step streams through it, and each row of the
// gradient is read 256 bytes at a time, which the hardware prefetcher follows.
constexpr int64_t kSlabPixels = 64;

// dst[c * ld + r] = src[r * ls + c] for r < rows, c < cols; src's block is zeroed.
void transpose_and_zero(float* src, int64_t ls, int64_t rows, int64_t cols, float* dst,
                        int64_t ld) {
  for (int64_t r = 0; r < rows; ++r) {
    float* s = src + r * ls;
    for (int64_t c = 0; c < cols; ++c) dst[c * ld + r] = s[c];
    std::fill(s, s + cols, 0.0f);
  }
}

#if FASTPONG_RMSPROP_X86
// The same for one 8x8 block, in registers: a scalar transpose (one load and one store per float)
// took as long as the step itself.
__attribute__((target("avx2"))) void transpose_and_zero_8x8(float* src, int64_t ls, float* dst,
                                                             int64_t ld) {
  __m256 r[8], t[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * ls);
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);  // a0 b0 a1 b1 | a4 b4 a5 b5
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);  // a0 b0 c0 d0 | a4 b4 c4 d4
    r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {
    _mm256_storeu_ps(dst + i * ld, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
    _mm256_storeu_ps(dst + (i + 4) * ld, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
  }
  const __m256 zero = _mm256_setzero_ps();
  for (int i = 0; i < 8; ++i) _mm256_storeu_ps(src + i * ls, zero);
}

__attribute__((target("avx2"))) void fill_slab_avx2(float* g, int64_t ls, int64_t hidden,
                                                     int64_t pixels, float* slab) {
  const int64_t full_rows = hidden / 8 * 8, full_cols = pixels / 8 * 8;
  for (int64_t j = 0; j < full_rows; j += 8) {
    for (int64_t i = 0; i < full_cols; i += 8) {
      transpose_and_zero_8x8(g + j * ls + i, ls, slab + i * hidden + j, hidden);
    }
  }
  transpose_and_zero(g + full_cols, ls, full_rows, pixels - full_cols, slab + full_cols * hidden,
                     hidden);
  transpose_and_zero(g + full_rows * ls, ls, hidden - full_rows, pixels, slab + full_rows, hidden);
}

bool avx2_supported() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2");
}
#endif

// slab (pixels, hidden) = the columns [0, pixels) of g (hidden rows of stride ls), transposed;
// they are zeroed in g.
void fill_slab(float* g, int64_t ls, int64_t hidden, int64_t pixels, float* slab) {
#if FASTPONG_RMSPROP_X86
  static const bool avx2 = avx2_supported();
  if (avx2) return fill_slab_avx2(g, ls, hidden, pixels, slab);
#endif
  transpose_and_zero(g, ls, hidden, pixels, slab, hidden);
}

}  // namespace

void rmsprop_step_transposed(PolicyTensors& weights, float* grad_w1, float* grad_w2,
                             PolicyTensors& cache, float learning_rate, double decay_rate) {
  const int64_t hidden = weights.hidden, input_size = weights.input_size;
  // The weights are stored transposed (w1t, input_size x hidden); the gradient comes in the
  // tutorial's (hidden, input_size). A slab of its columns is copied, transposed, into a buffer
  // that stays in cache (and zeroed where it lies), and the step runs along the slab, whose rows
  // of `hidden` match w1t's: one pass over each of the four arrays, instead of a copy into a
  // GradientBuffer (and a check of it) first.
  thread_local std::vector<float> slab;
  slab.resize(static_cast<size_t>(kSlabPixels * hidden));
  for (int64_t i0 = 0; i0 < input_size; i0 += kSlabPixels) {
    const int64_t pixels = std::min(kSlabPixels, input_size - i0);
    fill_slab(grad_w1 + i0, input_size, hidden, pixels, slab.data());
    rmsprop_range(weights.w1t.data() + i0 * hidden, slab.data(), cache.w1t.data() + i0 * hidden,
                  pixels * hidden, learning_rate, decay_rate);
  }
  rmsprop_step(weights.w2.data(), grad_w2, cache.w2.data(), hidden, learning_rate, decay_rate);
}

}  // namespace fastpong
