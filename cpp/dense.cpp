#include "fastpong/dense.hpp"

#include <algorithm>
#include <cmath>

#include "fastpong/parallel.hpp"

namespace fastpong {
namespace {

// Below this many multiply-adds a kernel stays on one thread (about 100 us of work): on a shared
// 2-core machine, waking a second thread can cost milliseconds when the other core is busy.
constexpr int64_t kParallelMinWork = int64_t{1} << 21;

// A layer narrower than this (the logits over a few actions) is computed as dot products along its
// transposed kernel: axpys along rows of 2 floats would spend their time in loop overhead.
constexpr int64_t kNarrowLayer = 8;

// Rows the forward pass takes through a layer together (see dense_rows), and the outputs of a
// wide layer one register tile holds per row (two AVX2 vectors).
constexpr int64_t kRowBlock = 8;
constexpr int kTile = 16;

bool worth_threads(int64_t rows, int64_t work_per_row) {
  return rows > 1 && rows * work_per_row >= kParallelMinWork;
}

// One layer as the kernels see it. `kernel_t`, the kernel transposed (out, in), is filled only
// where layer_views asks for it.
struct Layer {
  int64_t in, out;
  const float* kernel;
  const float* bias;
  std::vector<float> kernel_t;

  Layer(int64_t in_, int64_t out_, const float* kernel_, const float* bias_, bool transpose)
      : in(in_), out(out_), kernel(kernel_), bias(bias_) {
    if (!transpose) return;
    kernel_t.resize(static_cast<size_t>(in * out));
    for (int64_t i = 0; i < in; ++i) {
      for (int64_t j = 0; j < out; ++j) kernel_t[j * in + i] = kernel[i * out + j];
    }
  }
  bool narrow() const { return out < kNarrowLayer; }
};

// y[r, j0 + j] += sum_i x[r * x_row + i * x_step] * k[i * k_step + j0 + j] for r < R, j < kTile,
// summed over i in order in registers, each row of k loaded once for the R rows. (Adding into y
// in place instead would store every partial sum: that, not the arithmetic, bounded the loop.)
// The forward pass sums over inputs (x the observations, k the kernel), the kernel's gradient
// over steps (x the layer's inputs, transposed; k the deltas).
template <int R>
inline void add_tile(const float* x, int64_t x_row, int64_t x_step, int64_t n, const float* k,
                     int64_t k_step, int64_t j0, float* y, int64_t y_row) {
  float acc[R][kTile];
  for (int r = 0; r < R; ++r) {
    for (int j = 0; j < kTile; ++j) acc[r][j] = y[r * y_row + j0 + j];
  }
  for (int64_t i = 0; i < n; ++i) {
    const float* ki = k + i * k_step + j0;
    for (int r = 0; r < R; ++r) {
      const float xi = x[r * x_row + i * x_step];
#pragma omp simd
      for (int j = 0; j < kTile; ++j) acc[r][j] += xi * ki[j];
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int j = 0; j < kTile; ++j) y[r * y_row + j0 + j] = acc[r][j];
  }
}

// add_tile over every full tile of `width` outputs for `rows` rows, four rows at a time; returns
// where the full tiles end.
inline int64_t add_tiles(const float* x, int64_t x_row, int64_t x_step, int64_t n, const float* k,
                         int64_t k_step, int64_t width, int64_t rows, float* y) {
  const int64_t tiled = width / kTile * kTile;
  for (int64_t j0 = 0; j0 < tiled; j0 += kTile) {
    int64_t r = 0;
    for (; r + 4 <= rows; r += 4) {
      add_tile<4>(x + r * x_row, x_row, x_step, n, k, k_step, j0, y + r * width, width);
    }
    for (; r < rows; ++r) add_tile<1>(x + r * x_row, x_row, x_step, n, k, k_step, j0, y + r * width, width);
  }
  return tiled;
}

// y[r, :] = bias + x[r, :] . kernel for `rows` rows of x (row length in), then ReLU when `relu`.
// Wide layers: tiles of kTile outputs for 4 rows at a time (add_tile), the last outputs of a
// width that is not a multiple of kTile by axpys along the kernel's rows. Narrow layers: a dot
// product per output. Every output sums its inputs in order, bias first, whichever path and
// block it takes, so a row's result never depends on the rows computed with it.
FASTPONG_SIMD_CLONES
void dense_rows(const float* x, int64_t rows, const Layer& layer, bool relu, float* y) {
  const int64_t in = layer.in, out = layer.out;
  if (layer.narrow()) {
    for (int64_t r = 0; r < rows; ++r) {
      const float* xr = x + r * in;
      for (int64_t j = 0; j < out; ++j) {
        const float* k = layer.kernel_t.data() + j * in;
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int64_t i = 0; i < in; ++i) s += xr[i] * k[i];
        y[r * out + j] = layer.bias[j] + s;
      }
    }
  } else {
    for (int64_t r = 0; r < rows; ++r) std::copy(layer.bias, layer.bias + out, y + r * out);
    const int64_t tiled = add_tiles(x, in, 1, in, layer.kernel, out, out, rows, y);
    if (tiled < out) {
      for (int64_t i = 0; i < in; ++i) {
        const float* k = layer.kernel + i * out;
        for (int64_t r = 0; r < rows; ++r) {
          const float xi = x[r * in + i];
          float* yr = y + r * out;
#pragma omp simd
          for (int64_t j = tiled; j < out; ++j) yr[j] += xi * k[j];
        }
      }
    }
  }
  if (relu) {
#pragma omp simd
    for (int64_t j = 0; j < rows * out; ++j) y[j] = y[j] > 0.0f ? y[j] : 0.0f;
  }
}

// The layer for n rows, in blocks of kRowBlock, spread over threads when the work pays.
void layer_forward(const float* x, int64_t n, const Layer& layer, bool relu, float* y) {
  const int64_t blocks = (n + kRowBlock - 1) / kRowBlock;
  parallel_for(blocks, worth_threads(n, layer.in * layer.out), [&](int64_t b) {
    const int64_t r0 = b * kRowBlock;
    dense_rows(x + r0 * layer.in, std::min(kRowBlock, n - r0), layer, relu, y + r0 * layer.out);
  });
}

// log pi = logits - logsumexp(logits), with the maximum taken out first so that logits of any
// size (1e4 and beyond) neither overflow exp nor lose the small ones to cancellation.
// `probs` doubles as the scratch for exp(logits - max).
void log_softmax_row(const float* logits, int64_t a, float* log_probs, float* probs) {
  float top = logits[0];
  for (int64_t j = 1; j < a; ++j) top = std::max(top, logits[j]);
  float sum = 0.0f;
  for (int64_t j = 0; j < a; ++j) {
    const float e = std::exp(logits[j] - top);
    if (probs != nullptr) probs[j] = e;
    sum += e;
  }
  if (probs != nullptr) {
    const float inverse = 1.0f / sum;
    for (int64_t j = 0; j < a; ++j) probs[j] *= inverse;
  }
  if (log_probs != nullptr) {
    const float log_sum = std::log(sum);
    for (int64_t j = 0; j < a; ++j) log_probs[j] = (logits[j] - top) - log_sum;
  }
}

// grad_kernel[i, :] += sum_t inputs[t, i] * delta[t, :] for the rows i in [i0, i1), summed over t
// in order (each row of the gradient belongs to one part, so no two threads share a sum). Wide
// layers: register tiles of the gradient (add_tiles). Narrow ones: the sums are gathered in
// `scratch_t` (out, in), an axpy along the inputs' row per (t, j), then added in.
FASTPONG_SIMD_CLONES
void add_kernel_gradient(const float* inputs, const float* delta, int64_t steps,
                         const Layer& layer, int64_t i0, int64_t i1, float* grad_kernel,
                         float* scratch_t) {
  const int64_t in = layer.in, out = layer.out;
  if (!layer.narrow()) {
    // Gradient rows i as add_tiles' rows: x[r, t] = inputs[t, i0 + r], k = delta.
    float* g = grad_kernel + i0 * out;
    const int64_t tiled = add_tiles(inputs + i0, 1, in, steps, delta, out, out, i1 - i0, g);
    for (int64_t t = 0; t < steps && tiled < out; ++t) {
      const float* d = delta + t * out;
      for (int64_t i = i0; i < i1; ++i) {
        const float a = inputs[t * in + i];
        float* gi = grad_kernel + i * out;
#pragma omp simd
        for (int64_t j = tiled; j < out; ++j) gi[j] += a * d[j];
      }
    }
    return;
  }
  for (int64_t j = 0; j < out; ++j) std::fill(scratch_t + j * in + i0, scratch_t + j * in + i1, 0.0f);
  for (int64_t t = 0; t < steps; ++t) {
    const float* a = inputs + t * in;
    for (int64_t j = 0; j < out; ++j) {
      const float dj = delta[t * out + j];
      if (dj == 0.0f) continue;
      float* g = scratch_t + j * in;
#pragma omp simd
      for (int64_t i = i0; i < i1; ++i) g[i] += dj * a[i];
    }
  }
  for (int64_t i = i0; i < i1; ++i) {
    for (int64_t j = 0; j < out; ++j) grad_kernel[i * out + j] += scratch_t[j * in + i];
  }
}

// delta_in[in] = kernel[in, out] delta[out], back through a layer, then through the ReLU that
// produced its inputs (zero where inputs <= 0) unless `inputs` is null (the network's own input):
// an axpy along a row of the transposed kernel per output.
FASTPONG_SIMD_CLONES
void delta_row(const float* inputs, const float* kernel_t, const float* delta, int64_t in,
               int64_t out, float* delta_in) {
  for (int64_t i = 0; i < in; ++i) delta_in[i] = 0.0f;
  for (int64_t j = 0; j < out; ++j) {
    const float dj = delta[j];
    if (dj == 0.0f) continue;
    const float* k = kernel_t + j * in;
#pragma omp simd
    for (int64_t i = 0; i < in; ++i) delta_in[i] += dj * k[i];
  }
  if (inputs == nullptr) return;
#pragma omp simd
  for (int64_t i = 0; i < in; ++i) delta_in[i] = inputs[i] > 0.0f ? delta_in[i] : 0.0f;
}

// The policy's layers; transposed kernels where the forward pass (narrow layers) or the backward
// pass (layers it sends deltas back through: all but the first, unless `to_input`) needs them.
std::vector<Layer> layer_views(const DensePolicy& policy, bool backward, bool to_input = false) {
  std::vector<Layer> layers;
  const auto& w = policy.widths();
  for (int64_t l = 0; l < policy.num_layers(); ++l) {
    const bool narrow = w[l + 1] < kNarrowLayer;
    layers.emplace_back(w[l], w[l + 1], policy.kernel(l), policy.bias(l),
                        narrow || (backward && (l > 0 || to_input)));
  }
  return layers;
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
  const std::vector<Layer> layers = layer_views(*this, /*backward=*/false);
  const int64_t d = input_size(), a = num_actions();
  int64_t work = 0, widest = 0;
  for (const Layer& layer : layers) {
    work += layer.in * layer.out;
    widest = std::max(widest, layer.out);
  }
  run_in_parts(parts_for(worth_threads(n, work)), [&](int part, int parts) {
    // Two buffers in turn: each layer reads the previous layer's outputs and writes the other.
    std::vector<float> buffers(static_cast<size_t>(2 * kRowBlock * widest));
    float* const first = buffers.data();
    float* const second = first + kRowBlock * widest;
    const int64_t end = n * (part + 1) / parts;
    for (int64_t r0 = n * part / parts; r0 < end; r0 += kRowBlock) {
      const int64_t rows = std::min(kRowBlock, end - r0);
      const float* in = x + r0 * d;
      float* out = first;
      for (size_t l = 0; l < layers.size(); ++l) {
        dense_rows(in, rows, layers[l], l + 1 < layers.size(), out);
        in = out;
        out = out == first ? second : first;
      }
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t row = r0 + r;
        log_softmax_row(in + r * a, a, log_probs != nullptr ? log_probs + row * a : nullptr,
                        probs != nullptr ? probs + row * a : nullptr);
      }
    }
  });
}

namespace {

// What a backward pass needs besides the gradients, kept per calling thread between calls so that
// a training loop does not allocate (and page-fault) the same buffers every episode.
struct BackwardScratch {
  std::vector<std::vector<float>> acts;  // acts[l]: steps x out of layer l (ReLU'd; logits last)
  std::vector<float> delta, delta_in, transposed;
};

}  // namespace

void DensePolicy::accumulate_gradient(const float* x, const int64_t* actions,
                                      const float* advantages, int64_t steps, float scale,
                                      const DenseTensors& grads, float* input_grad,
                                      float entropy_coef) const {
  if (steps == 0) return;
  const std::vector<Layer> layers = layer_views(*this, /*backward=*/true, input_grad != nullptr);
  const int64_t count = num_layers(), a = num_actions();
  // The OpenMP parts below must see this thread's buffers: they use these references, never
  // `scratch` itself (which names each worker's own, empty, instance).
  thread_local BackwardScratch scratch;
  auto& acts = scratch.acts;
  auto& transposed = scratch.transposed;
  acts.resize(static_cast<size_t>(count));
  for (int64_t l = 0; l < count; ++l) {
    const Layer& layer = layers[l];
    acts[l].resize(static_cast<size_t>(steps * layer.out));
    layer_forward(l == 0 ? x : acts[l - 1].data(), steps, layer, l + 1 < count, acts[l].data());
  }

  // d J / d logits[t] = scale * (A_t * (onehot(a_t) - p) - beta * p * (log p + H(p))), p = pi(.|s_t).
  auto& delta = scratch.delta;
  delta.resize(static_cast<size_t>(steps * a));
  std::vector<float> log_p(entropy_coef != 0.0f ? static_cast<size_t>(a) : 0);
  for (int64_t t = 0; t < steps; ++t) {
    float* d = delta.data() + t * a;
    log_softmax_row(acts[count - 1].data() + t * a, a, log_p.empty() ? nullptr : log_p.data(), d);
    const float coefficient = scale * advantages[t];
    if (log_p.empty()) {
      for (int64_t j = 0; j < a; ++j) d[j] = coefficient * ((j == actions[t] ? 1.0f : 0.0f) - d[j]);
      continue;
    }
    float entropy = 0.0f;
    for (int64_t j = 0; j < a; ++j) entropy -= d[j] * log_p[j];
    const float bonus = scale * entropy_coef;
    for (int64_t j = 0; j < a; ++j) {
      d[j] = coefficient * ((j == actions[t] ? 1.0f : 0.0f) - d[j]) - bonus * d[j] * (log_p[j] + entropy);
    }
  }

  auto& delta_in = scratch.delta_in;
  for (int64_t l = count - 1; l >= 0; --l) {
    const Layer& layer = layers[l];
    const int64_t in = layer.in, out = layer.out;
    const float* inputs = l == 0 ? x : acts[l - 1].data();
    // dW[i, j] += sum_t inputs[t, i] delta[t, j]: parts own rows i of dW.
    if (layer.narrow()) transposed.resize(static_cast<size_t>(in * out));
    run_in_parts(parts_for(worth_threads(in, steps * out)), [&](int part, int parts) {
      add_kernel_gradient(inputs, delta.data(), steps, layer, in * part / parts,
                          in * (part + 1) / parts, grads.kernels[l], transposed.data());
    });
    // db[j] += sum_t delta[t, j]
    float* db = grads.biases[l];
    for (int64_t t = 0; t < steps; ++t) {
      const float* d = delta.data() + t * out;
      for (int64_t j = 0; j < out; ++j) db[j] += d[j];
    }
    if (l == 0 && input_grad == nullptr) break;
    // The network's input has no ReLU to pass back through; its delta goes to input_grad.
    float* target = input_grad;
    if (l > 0) {
      delta_in.resize(static_cast<size_t>(steps * in));
      target = delta_in.data();
    }
    parallel_for(steps, worth_threads(steps, in * out), [&](int64_t t) {
      delta_row(l == 0 ? nullptr : inputs + t * in, layer.kernel_t.data(), delta.data() + t * out,
                in, out, target + t * in);
    });
    if (l == 0) break;
    delta.swap(delta_in);
  }
}

namespace {
constexpr float kLargestBelowOne = 1.0f - 0x1p-24f;
}  // namespace

void sample_categorical(const float* probs, int64_t n, int64_t num_actions, const float* uniforms,
                        int32_t* actions) {
  for (int64_t r = 0; r < n; ++r) {
    const float* p = probs + r * num_actions;
    // A float64 uniform just below 1 arrives rounded to 1.0f: it is the largest float below 1.
    const float u = std::min(uniforms[r], kLargestBelowOne);
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
