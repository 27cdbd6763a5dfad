#include "fastpong/dense.hpp"

#include <algorithm>
#include <cmath>

#include "fastpong/parallel.hpp"

namespace fastpong {
namespace {

// y[out] = bias + x[in] . kernel[in, out], then ReLU when `relu`. The loop runs over the kernel's
// rows, so the inner loop is an axpy along a contiguous row of `out` floats (SIMD), and an input
// of 0 (half of a ReLU layer's outputs) costs nothing.
FASTPONG_SIMD_CLONES
void dense_row(const float* x, int64_t in, const float* kernel, const float* bias, int64_t out,
               bool relu, float* y) {
  for (int64_t j = 0; j < out; ++j) y[j] = bias[j];
  for (int64_t i = 0; i < in; ++i) {
    const float xi = x[i];
    if (xi == 0.0f) continue;
    const float* k = kernel + i * out;
#pragma omp simd
    for (int64_t j = 0; j < out; ++j) y[j] += xi * k[j];
  }
  if (relu) {
#pragma omp simd
    for (int64_t j = 0; j < out; ++j) y[j] = y[j] > 0.0f ? y[j] : 0.0f;
  }
}

// log pi = logits - logsumexp(logits), with the maximum taken out first so that logits of any
// size (1e4 and beyond) neither overflow exp nor lose the small ones to cancellation.
void log_softmax_row(const float* logits, int64_t a, float* log_probs, float* probs) {
  float top = logits[0];
  for (int64_t j = 1; j < a; ++j) top = std::max(top, logits[j]);
  float sum = 0.0f;
  for (int64_t j = 0; j < a; ++j) sum += std::exp(logits[j] - top);
  const float log_sum = std::log(sum);
  for (int64_t j = 0; j < a; ++j) {
    const float lp = (logits[j] - top) - log_sum;
    if (log_probs != nullptr) log_probs[j] = lp;
    if (probs != nullptr) probs[j] = std::exp(lp);
  }
}

// grad_kernel[i, :] += sum_t inputs[t, i] * delta[t, :] for the rows i in [i0, i1): each row of
// the gradient is owned by one part and summed over t in order, so threads never share a sum.
FASTPONG_SIMD_CLONES
void add_kernel_gradient(const float* inputs, int64_t in, const float* delta, int64_t out,
                         int64_t steps, int64_t i0, int64_t i1, float* grad_kernel) {
  for (int64_t i = i0; i < i1; ++i) {
    float* g = grad_kernel + i * out;
    for (int64_t t = 0; t < steps; ++t) {
      const float a = inputs[t * in + i];
      if (a == 0.0f) continue;
      const float* d = delta + t * out;
#pragma omp simd
      for (int64_t j = 0; j < out; ++j) g[j] += a * d[j];
    }
  }
}

// delta_in[i] = (inputs[i] > 0) * delta[out] . kernel[i, :]: back through a layer and the ReLU
// that produced its inputs.
FASTPONG_SIMD_CLONES
void hidden_delta_row(const float* inputs, int64_t in, const float* kernel, const float* delta,
                      int64_t out, float* delta_in) {
  for (int64_t i = 0; i < in; ++i) {
    if (!(inputs[i] > 0.0f)) {
      delta_in[i] = 0.0f;
      continue;
    }
    const float* k = kernel + i * out;
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < out; ++j) s += delta[j] * k[j];
    delta_in[i] = s;
  }
}

bool worth_threads(int64_t rows, int64_t work_per_row) {
  return rows > 1 && rows * work_per_row >= FASTPONG_PARALLEL_MIN_WORK;
}

}  // namespace

DensePolicy::DensePolicy(std::vector<int64_t> widths) : widths_(std::move(widths)) {
  for (int64_t l = 0; l < num_layers(); ++l) {
    kernels_.emplace_back(static_cast<size_t>(widths_[l] * widths_[l + 1]), 0.0f);
    biases_.emplace_back(static_cast<size_t>(widths_[l + 1]), 0.0f);
  }
}

DenseTensors DensePolicy::tensors() {
  DenseTensors t;
  for (int64_t l = 0; l < num_layers(); ++l) {
    t.kernels.push_back(kernel(l));
    t.biases.push_back(bias(l));
  }
  return t;
}

void DensePolicy::forward(const float* x, int64_t n, float* log_probs, float* probs) const {
  const int64_t layers = num_layers(), d = input_size(), a = num_actions();
  int64_t work = 0, widest = 0;
  for (int64_t l = 0; l < layers; ++l) {
    work += widths_[l] * widths_[l + 1];
    widest = std::max(widest, widths_[l + 1]);
  }
  run_in_parts(parts_for(worth_threads(n, work)), [&](int part, int parts) {
    // Two buffers in turn: each layer reads the previous layer's output and writes the other.
    std::vector<float> buffers(static_cast<size_t>(2 * widest));
    for (int64_t r = n * part / parts; r < n * (part + 1) / parts; ++r) {
      const float* in = x + r * d;
      float* out = buffers.data();
      for (int64_t l = 0; l < layers; ++l) {
        dense_row(in, widths_[l], kernel(l), bias(l), widths_[l + 1], l + 1 < layers, out);
        in = out;
        out = out == buffers.data() ? buffers.data() + widest : buffers.data();
      }
      log_softmax_row(in, a, log_probs != nullptr ? log_probs + r * a : nullptr,
                      probs != nullptr ? probs + r * a : nullptr);
    }
  });
}

void DensePolicy::forward_layers(const float* x, int64_t n,
                                 std::vector<std::vector<float>>& acts) const {
  const int64_t layers = num_layers();
  acts.resize(static_cast<size_t>(layers));
  for (int64_t l = 0; l < layers; ++l) {
    const int64_t in = widths_[l], out = widths_[l + 1];
    acts[l].resize(static_cast<size_t>(n * out));
    const float* inputs = l == 0 ? x : acts[l - 1].data();
    float* outputs = acts[l].data();
    const bool relu = l + 1 < layers;
    parallel_for(n, worth_threads(n, in * out), [&](int64_t r) {
      dense_row(inputs + r * in, in, kernel(l), bias(l), out, relu, outputs + r * out);
    });
  }
}

void DensePolicy::accumulate_gradient(const float* x, const int64_t* actions,
                                      const float* advantages, int64_t steps, float scale,
                                      const DenseTensors& grads) const {
  if (steps == 0) return;
  const int64_t layers = num_layers(), a = num_actions();
  std::vector<std::vector<float>> acts;
  forward_layers(x, steps, acts);

  // d J / d logits[t] = scale * A_t * (onehot(a_t) - pi(.|s_t)).
  std::vector<float> delta(static_cast<size_t>(steps * a));
  for (int64_t t = 0; t < steps; ++t) {
    float* d = delta.data() + t * a;
    log_softmax_row(acts[layers - 1].data() + t * a, a, nullptr, d);
    const float coefficient = scale * advantages[t];
    for (int64_t j = 0; j < a; ++j) d[j] = coefficient * ((j == actions[t] ? 1.0f : 0.0f) - d[j]);
  }

  std::vector<float> delta_in;
  for (int64_t l = layers - 1; l >= 0; --l) {
    const int64_t in = widths_[l], out = widths_[l + 1];
    const float* inputs = l == 0 ? x : acts[l - 1].data();
    // dW[i, j] += sum_t inputs[t, i] delta[t, j]: parts own rows i of dW.
    run_in_parts(parts_for(worth_threads(in, steps * out)), [&](int part, int parts) {
      add_kernel_gradient(inputs, in, delta.data(), out, steps, in * part / parts,
                          in * (part + 1) / parts, grads.kernels[l]);
    });
    // db[j] += sum_t delta[t, j]
    float* db = grads.biases[l];
    for (int64_t t = 0; t < steps; ++t) {
      const float* d = delta.data() + t * out;
      for (int64_t j = 0; j < out; ++j) db[j] += d[j];
    }
    if (l == 0) break;
    delta_in.resize(static_cast<size_t>(steps * in));
    parallel_for(steps, worth_threads(steps, in * out), [&](int64_t t) {
      hidden_delta_row(inputs + t * in, in, kernel(l), delta.data() + t * out, out,
                       delta_in.data() + t * in);
    });
    delta.swap(delta_in);
  }
}

void sample_categorical(const float* probs, int64_t n, int64_t num_actions, const float* uniforms,
                        int32_t* actions) {
  for (int64_t r = 0; r < n; ++r) {
    const float* p = probs + r * num_actions;
    const float u = uniforms[r];
    int64_t chosen = -1, last_possible = 0;
    float cumulative = 0.0f;
    for (int64_t j = 0; j < num_actions; ++j) {
      if (p[j] > 0.0f) last_possible = j;
      cumulative += p[j];
      if (chosen < 0 && u < cumulative) chosen = j;
    }
    actions[r] = static_cast<int32_t>(chosen >= 0 ? chosen : last_possible);
  }
}

}  // namespace fastpong
