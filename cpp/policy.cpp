#include "fastpong/policy.hpp"

#include <algorithm>
#include <cmath>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "fastpong/parallel.hpp"

namespace fastpong {
namespace {

// y += a * x over one row of `hidden` floats: the only inner loop of forward and backward.
FASTPONG_SIMD_CLONES
void axpy(float a, const float* x, float* y, int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) y[j] += a * x[j];
}

// sum_j a[j] b[j]
FASTPONG_SIMD_CLONES
float dot(const float* a, const float* b, int64_t n) {
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < n; ++j) sum += a[j] * b[j];
  return sum;
}

inline float sigmoid(float logit) {
  return static_cast<float>(1.0 / (1.0 + std::exp(-static_cast<double>(logit))));
}

// h = relu(h); p = sigmoid(W2 . h)
inline float finish_forward(const float* w2, float* h, int64_t hidden) {
  for (int64_t j = 0; j < hidden; ++j) h[j] = h[j] > 0.0f ? h[j] : 0.0f;
  return sigmoid(dot(w2, h, hidden));
}

// The [begin, end) slice of input pixels that thread `t` of `threads` owns in the backward pass.
inline void pixel_slice(int64_t input_size, int t, int threads, int64_t& begin, int64_t& end) {
  begin = input_size * t / threads;
  end = input_size * (t + 1) / threads;
}

}  // namespace

PolicyTensors::PolicyTensors(int64_t input_size_, int64_t hidden_)
    : input_size(input_size_),
      hidden(hidden_),
      w1t(static_cast<size_t>(input_size_ * hidden_), 0.0f),
      w2(static_cast<size_t>(hidden_), 0.0f) {}

void PolicyTensors::zero() {
  std::fill(w1t.begin(), w1t.end(), 0.0f);
  std::fill(w2.begin(), w2.end(), 0.0f);
}

Policy::Policy(int64_t input_size, int64_t hidden) : weights_(input_size, hidden) {}

void Policy::forward_dense(const float* x, int64_t n, float* p, float* h) const {
  const int64_t input_size = weights_.input_size, hidden = weights_.hidden;
  const float* w1t = weights_.w1t.data();
  const bool parallel = n > 1 && n * input_size * 4 >= FASTPONG_PARALLEL_MIN_WORK;
#pragma omp parallel for num_threads(num_threads()) if (parallel) schedule(static)
  for (int64_t r = 0; r < n; ++r) {
    const float* xr = x + r * input_size;
    float* hr = h + r * hidden;
    std::fill(hr, hr + hidden, 0.0f);
    // h = W1 x, one W1 column (a w1t row) per nonzero pixel
    for (int64_t i = 0; i < input_size; ++i) {
      if (xr[i] != 0.0f) axpy(xr[i], w1t + i * hidden, hr, hidden);
    }
    p[r] = finish_forward(weights_.w2.data(), hr, hidden);
  }
}

void Policy::forward_sparse(const SparseRows& x, float* p, float* h) const {
  const int64_t hidden = weights_.hidden;
  const float* w1t = weights_.w1t.data();
  const int64_t n = x.rows();
  const bool parallel = n > 1 && x.nonzeros() * hidden >= FASTPONG_PARALLEL_MIN_WORK;
#pragma omp parallel for num_threads(num_threads()) if (parallel) schedule(static)
  for (int64_t r = 0; r < n; ++r) {
    float* hr = h + r * hidden;
    std::fill(hr, hr + hidden, 0.0f);
    // h = W1 x with x a handful of +-1 pixels
    for (int64_t k = x.offsets[r]; k < x.offsets[r + 1]; ++k) {
      axpy(static_cast<float>(x.values[k]), w1t + static_cast<int64_t>(x.indices[k]) * hidden, hr,
           hidden);
    }
    p[r] = finish_forward(weights_.w2.data(), hr, hidden);
  }
}

void Policy::hidden_gradient(const float* eph, const float* epdlogp, int64_t steps, float* dh,
                             float* dw2) const {
  const int64_t hidden = weights_.hidden;
  const float* w2 = weights_.w2.data();
  for (int64_t t = 0; t < steps; ++t) {
    const float* ht = eph + t * hidden;
    float* dht = dh + t * hidden;
    const float g = epdlogp[t];
    // dW2 += h_t g_t;  dh_t = g_t W2 where h_t > 0 (ReLU gate)
    for (int64_t j = 0; j < hidden; ++j) {
      dw2[j] += ht[j] * g;
      dht[j] = ht[j] > 0.0f ? g * w2[j] : 0.0f;
    }
  }
}

void Policy::backward_dense(const float* eph, const float* epx, const float* epdlogp,
                            int64_t steps, PolicyTensors& grads) const {
  const int64_t input_size = weights_.input_size, hidden = weights_.hidden;
  grads.zero();
  std::vector<float> dh(static_cast<size_t>(steps * hidden));
  hidden_gradient(eph, epdlogp, steps, dh.data(), grads.w2.data());
  float* dw1t = grads.w1t.data();
  const int threads = steps * input_size >= FASTPONG_PARALLEL_MIN_WORK ? num_threads() : 1;
  // dW1^T[i] = sum_t x_t[i] dh_t. Each thread owns a slice of pixels, so no two threads write the
  // same row and every sum runs over t in order: the result does not depend on the thread count.
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    int t_id = 0, t_count = 1;
#ifdef _OPENMP
    t_id = omp_get_thread_num();
    t_count = omp_get_num_threads();
#endif
    int64_t begin, end;
    pixel_slice(input_size, t_id, t_count, begin, end);
    for (int64_t t = 0; t < steps; ++t) {
      const float* xt = epx + t * input_size;
      for (int64_t i = begin; i < end; ++i) {
        if (xt[i] != 0.0f) axpy(xt[i], dh.data() + t * hidden, dw1t + i * hidden, hidden);
      }
    }
  }
}

void Policy::accumulate_gradient(const EpisodeBuffer& episode, const float* advantages,
                                 PolicyTensors& grads) const {
  const int64_t hidden = weights_.hidden, steps = episode.steps();
  std::vector<float> g(static_cast<size_t>(steps));
  for (int64_t t = 0; t < steps; ++t) g[t] = episode.dlogps()[t] * advantages[t];
  std::vector<float> dh(static_cast<size_t>(steps * hidden));
  hidden_gradient(episode.hidden_states().data(), g.data(), steps, dh.data(), grads.w2.data());

  const SparseRows& x = episode.inputs();
  float* dw1t = grads.w1t.data();
  const int threads = x.nonzeros() * hidden >= FASTPONG_PARALLEL_MIN_WORK ? num_threads() : 1;
  // As in backward_dense: threads own pixel slices; a row's nonzeros are sorted by pixel, so each
  // thread finds its part of a row by binary search.
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    int t_id = 0, t_count = 1;
#ifdef _OPENMP
    t_id = omp_get_thread_num();
    t_count = omp_get_num_threads();
#endif
    int64_t begin, end;
    pixel_slice(weights_.input_size, t_id, t_count, begin, end);
    const int32_t* indices = x.indices.data();
    for (int64_t t = 0; t < steps; ++t) {
      const int32_t* row_begin = indices + x.offsets[t];
      const int32_t* row_end = indices + x.offsets[t + 1];
      const int32_t* first = std::lower_bound(row_begin, row_end, begin);
      const int32_t* last = std::lower_bound(first, row_end, end);
      for (const int32_t* k = first; k < last; ++k) {
        const int64_t i = *k;
        axpy(static_cast<float>(x.values[k - indices]), dh.data() + t * hidden,
             dw1t + i * hidden, hidden);
      }
    }
  }
}

}  // namespace fastpong
