#include "fastpong/policy.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>

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

// The OR of the bit patterns of x[0, kCount), sign bits cleared: 0 exactly when all are +-0.
template <int64_t kCount>
inline uint32_t magnitude_bits(const float* x) {
  uint32_t bits = 0;
#pragma omp simd reduction(| : bits)
  for (int64_t j = 0; j < kCount; ++j) {
    uint32_t b;
    std::memcpy(&b, x + j, sizeof b);
    bits |= b;
  }
  return bits & 0x7fffffffu;
}

// Writes the indices of x's nonzeros, increasing, to nz and returns how many there are; or, if x
// holds a NaN or infinity, returns -1 - (the index of the first). One pass over x serves both the
// finiteness check and the search for the few nonzeros of a frame difference: blocks of zeros
// (99.6% of a frame difference) are skipped whole, 64 values and then 8 at a time, and NaN and
// infinity, being nonzero, can only be in the blocks that are looked at one value at a time.
FASTPONG_SIMD_CLONES
int64_t find_nonzeros(const float* x, int64_t n, int32_t* nz) {
  constexpr int64_t kBlock = 64, kSubBlock = 8;
  int64_t count = 0;
  // Appends x[begin, end)'s nonzeros; false at a non-finite value, `count` then being -1 - index.
  const auto visit = [&](int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; ++j) {
      if (x[j] == 0.0f) continue;
      if (!std::isfinite(x[j])) {
        count = -1 - j;
        return false;
      }
      nz[count++] = static_cast<int32_t>(j);
    }
    return true;
  };
  int64_t i = 0;
  for (; i + kBlock <= n; i += kBlock) {
    if (magnitude_bits<kBlock>(x + i) == 0) continue;
    for (int64_t j = i; j < i + kBlock; j += kSubBlock) {
      if (magnitude_bits<kSubBlock>(x + j) != 0 && !visit(j, j + kSubBlock)) return count;
    }
  }
  visit(i, n);
  return count;
}

// h = relu(W1 x); p = sigmoid(W2 . h) for one dense input row, in one pass over x. Returns as
// find_nonzeros: x's nonzero count, or -1 - (the index of its first non-finite value), in which
// case p and h are left unspecified. nz: scratch space for input_size indices.
int64_t forward_row(const PolicyTensors& weights, const float* x, float* p, float* h,
                    int32_t* nz) {
  const int64_t hidden = weights.hidden;
  const int64_t count = find_nonzeros(x, weights.input_size, nz);
  if (count < 0) return count;
  std::fill(h, h + hidden, 0.0f);
  // h = W1 x, one W1 column (a w1t row) per nonzero pixel
  for (int64_t k = 0; k < count; ++k) {
    axpy(x[nz[k]], weights.w1t.data() + static_cast<int64_t>(nz[k]) * hidden, h, hidden);
  }
  *p = finish_forward(weights.w2.data(), h, hidden);
  return count;
}

// Uninitialized scratch space (a std::vector would zero it first).
template <typename T>
std::unique_ptr<T[]> scratch(int64_t n) {
  return std::unique_ptr<T[]>(new T[static_cast<size_t>(n)]);
}

// One step of the backward pass through the output layer, g = dlogp (times the advantage).
// The gate is applied as a bit mask: written as `h > 0 ? g * w2 : 0` the multiply sits in a
// branch that GCC will not vectorize (it might trap), and the ReLU's coin flips mispredict.
FASTPONG_SIMD_CLONES
void hidden_gradient_step(const float* h, float g, const float* w2, int64_t hidden, float* dh,
                          float* dw2) {
  // dW2 += h g;  dh = g W2 where h > 0 (the ReLU gate), else 0
#pragma omp simd
  for (int64_t j = 0; j < hidden; ++j) {
    dw2[j] += h[j] * g;
    const float gated = g * w2[j];
    uint32_t bits;
    std::memcpy(&bits, &gated, sizeof bits);
    bits &= h[j] > 0.0f ? 0xffffffffu : 0u;
    std::memcpy(dh + j, &bits, sizeof bits);
  }
}

// The nonzero inputs of a run of steps regrouped by pixel, i.e. the transpose of the steps' sparse
// rows (a counting sort). Pixel i's entries are [first[i], first[i + 1]), in increasing step order,
// so every per-pixel sum below runs in one fixed order whatever the thread count.
struct ByPixel {
  std::vector<int64_t> first;    // input_size + 1 offsets
  std::vector<int32_t> step;     // each entry's step, relative to the run's first step
  std::vector<float> value;      // and its input value x[t][i]
  std::vector<int32_t> touched;  // the pixels with entries, increasing

  // Rows [0, steps) of a CSR matrix (offsets, indices, values) over input_size columns.
  template <typename Value>
  void assign(const int64_t* offsets, const int32_t* indices, const Value* values, int64_t steps,
              int64_t input_size) {
    const int64_t base = offsets[0], entries = offsets[steps] - base;
    first.assign(static_cast<size_t>(input_size + 1), 0);
    for (int64_t k = base; k < base + entries; ++k) ++first[indices[k] + 1];
    touched.clear();
    for (int64_t i = 0; i < input_size; ++i) {
      if (first[i + 1] != 0) touched.push_back(static_cast<int32_t>(i));
      first[i + 1] += first[i];
    }
    step.resize(static_cast<size_t>(entries));
    value.resize(static_cast<size_t>(entries));
    std::vector<int64_t> next(first.begin(), first.end() - 1);
    for (int64_t t = 0; t < steps; ++t) {
      for (int64_t k = offsets[t]; k < offsets[t + 1]; ++k) {
        const int64_t slot = next[indices[k]]++;
        step[slot] = static_cast<int32_t>(t);
        value[slot] = static_cast<float>(values[k]);
      }
    }
  }
  int64_t entries() const { return static_cast<int64_t>(step.size()); }
};

// The hidden units are summed in blocks of 64 floats, few enough that a block's sums stay in
// registers (8 AVX2 registers) while a pixel's entries stream by; what is left over in blocks of 8
// (one register), then whatever remains. (GCC's unroll-and-jam would undo this by interleaving
// two entries over a scalar loop; CMakeLists.txt turns it off.)
constexpr int64_t kHiddenBlock = 64;
constexpr int64_t kHiddenTailBlock = 8;

// dW1^T[i] += sum_k value[k] dh[step[k]] over one block of hidden units of one pixel i: the block
// is summed over all of the pixel's entries, in order, then added to the gradient row once, rather
// than once per entry. kWidth is the block's width as a compile-time constant (0: `width`).
template <int64_t kWidth>
inline void add_pixel_block(const int32_t* step, const float* value, int64_t count,
                            const float* dh_block, int64_t hidden, int64_t width, float* out) {
  const int64_t n = kWidth > 0 ? kWidth : width;
  float acc[kHiddenBlock] = {};
  for (int64_t k = 0; k < count; ++k) {
    const float* d = dh_block + static_cast<int64_t>(step[k]) * hidden;
    const float v = value[k];
    // acc += x_t[i] dh_t over this block of hidden units
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) acc[j] += v * d[j];
  }
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) out[j] += acc[j];
}

FASTPONG_SIMD_CLONES
void add_pixel_gradient(const int32_t* step, const float* value, int64_t count, const float* dh,
                        int64_t hidden, float* dw1t_row) {
  int64_t j = 0;
  for (; j + kHiddenBlock <= hidden; j += kHiddenBlock) {
    add_pixel_block<kHiddenBlock>(step, value, count, dh + j, hidden, 0, dw1t_row + j);
  }
  for (; j + kHiddenTailBlock <= hidden; j += kHiddenTailBlock) {
    add_pixel_block<kHiddenTailBlock>(step, value, count, dh + j, hidden, 0, dw1t_row + j);
  }
  if (j < hidden) add_pixel_block<0>(step, value, count, dh + j, hidden, hidden - j, dw1t_row + j);
}

// Below this many multiply-adds (entries * hidden) the input gradient stays on one thread. A
// 1000-step Pong episode (26k entries * 200 = 5M) takes ~0.4 ms on one core; waking a second
// thread costs microseconds when its core is idle but milliseconds when another process keeps it
// busy, so only ~1.5 ms of work and up is shared.
constexpr int64_t kParallelInputGradientWork = int64_t{1} << 24;

// dW1^T[i] += sum_t x_t[i] dh_t for every pixel with entries in x. The touched pixels are shared
// out by their entry counts, so threads get equal work; a pixel's sum is the same on any thread.
void add_input_gradient(const ByPixel& x, const float* dh, int64_t hidden, float* dw1t) {
  const int64_t pixels = static_cast<int64_t>(x.touched.size());
  const int parts = parts_for(x.entries() * hidden >= kParallelInputGradientWork);
  run_in_parts(parts, [&](int part, int) {
    // The first touched pixel whose entries start at or after `limit`.
    const auto first_starting_at = [&](int64_t limit) {
      return std::partition_point(x.touched.begin(), x.touched.end(),
                                  [&](int32_t i) { return x.first[i] < limit; }) -
             x.touched.begin();
    };
    // this part's pixels: those whose first entry falls in [part, part + 1) * entries / parts
    const int64_t begin = part == 0 ? 0 : first_starting_at(x.entries() * part / parts);
    const int64_t end =
        part + 1 == parts ? pixels : first_starting_at(x.entries() * (part + 1) / parts);
    for (int64_t p = begin; p < end; ++p) {
      const int32_t i = x.touched[p];
      const int64_t k = x.first[i], count = x.first[i + 1] - k;
      add_pixel_gradient(x.step.data() + k, x.value.data() + k, count, dh, hidden,
                         dw1t + static_cast<int64_t>(i) * hidden);
    }
  });
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

int64_t Policy::forward_dense(const float* x, int64_t n, float* p, float* h) const {
  const int64_t input_size = weights_.input_size, hidden = weights_.hidden;
  if (n == 0) return -1;
  const auto nz = scratch<int32_t>(input_size);
  const int64_t first_row = forward_row(weights_, x, p, h, nz.get());
  if (first_row < 0) return -1 - first_row;
  if (n == 1) return -1;
  // The first row, done above on this thread, tells how dense the rows are: its nonzeros stand in
  // for each remaining row's in the work estimate (a scan of the row plus a hidden-long row of
  // multiply-adds per nonzero), so a batch of sparse frame differences stays on one thread.
  const bool parallel = (n - 1) * (input_size + first_row * hidden) >= FASTPONG_PARALLEL_MIN_WORK;
  // Each part keeps the first non-finite flat index of its rows, if any.
  constexpr int64_t kNone = std::numeric_limits<int64_t>::max();
  const int parts = parts_for(parallel);
  std::vector<int64_t> first_bad(static_cast<size_t>(parts), kNone);
  run_in_parts(parts, [&](int part, int) {
    const auto row_nz = scratch<int32_t>(input_size);
    const int64_t rows = n - 1;
    for (int64_t r = 1 + rows * part / parts; r < 1 + rows * (part + 1) / parts; ++r) {
      const int64_t count =
          forward_row(weights_, x + r * input_size, p + r, h + r * hidden, row_nz.get());
      if (count < 0) {
        first_bad[part] = r * input_size + (-1 - count);
        return;
      }
    }
  });
  const int64_t first = *std::min_element(first_bad.begin(), first_bad.end());
  return first == kNone ? -1 : first;
}

void Policy::forward_sparse(const SparseRows& x, float* p, float* h) const {
  const int64_t hidden = weights_.hidden;
  const float* w1t = weights_.w1t.data();
  const int64_t n = x.rows();
  const bool parallel = x.nonzeros() * hidden >= FASTPONG_PARALLEL_MIN_WORK;
  parallel_for(n, parallel, [&](int64_t r) {
    float* hr = h + r * hidden;
    std::fill(hr, hr + hidden, 0.0f);
    // h = W1 x with x a handful of +-1 pixels
    for (int64_t k = x.offsets[r]; k < x.offsets[r + 1]; ++k) {
      axpy(static_cast<float>(x.values[k]), w1t + static_cast<int64_t>(x.indices[k]) * hidden, hr,
           hidden);
    }
    p[r] = finish_forward(weights_.w2.data(), hr, hidden);
  });
}

void Policy::hidden_gradient(const float* eph, const float* epdlogp, int64_t steps, float* dh,
                             float* dw2) const {
  const int64_t hidden = weights_.hidden;
  for (int64_t t = 0; t < steps; ++t) {
    hidden_gradient_step(eph + t * hidden, epdlogp[t], weights_.w2.data(), hidden, dh + t * hidden,
                         dw2);
  }
}

int64_t Policy::backward_dense(const float* eph, const float* epx, const float* epdlogp,
                               int64_t steps, float* dw1, float* dw2) const {
  const int64_t input_size = weights_.input_size, hidden = weights_.hidden;
  const auto dh = scratch<float>(steps * hidden);
  std::fill(dw2, dw2 + hidden, 0.0f);
  hidden_gradient(eph, epdlogp, steps, dh.get(), dw2);
  // dW1[:, i] = sum_t x_t[i] dh_t. The dense inputs are read once, in one pass that both checks
  // them (NaN, infinity) and finds their nonzeros, a run of steps at a time (which bounds the
  // memory when they are not sparse at all). The pass is memory-bound (25 MB for a 1,000-step
  // episode) and stays on one thread: a second one saved little and, with the other core busy,
  // cost four times the call. Each run's nonzeros are summed per pixel as on the sparse path,
  // into one row of `column`, which is then added to dW1's column: only the pixels an episode
  // touches (a few hundred) are written, where the weights' own layout would need a transpose
  // of all 1.28M values.
  constexpr int64_t kRunEntries = int64_t{1} << 20;
  const auto nz = scratch<int32_t>(input_size);
  const auto column = scratch<float>(hidden);
  std::vector<int64_t> offsets;
  std::vector<int32_t> indices;
  std::vector<float> values;
  ByPixel by_pixel;
  for (int64_t t0 = 0, t = 0; t0 < steps; t0 = t) {
    offsets.assign(1, 0);
    indices.clear();
    values.clear();
    for (; t < steps && offsets.back() < kRunEntries; ++t) {
      const float* xt = epx + t * input_size;
      const int64_t count = find_nonzeros(xt, input_size, nz.get());
      if (count < 0) return t * input_size + (-1 - count);
      for (int64_t k = 0; k < count; ++k) {
        indices.push_back(nz[k]);
        values.push_back(xt[nz[k]]);
      }
      offsets.push_back(static_cast<int64_t>(indices.size()));
    }
    by_pixel.assign(offsets.data(), indices.data(), values.data(), t - t0, input_size);
    for (const int32_t i : by_pixel.touched) {
      const int64_t k = by_pixel.first[i], count = by_pixel.first[i + 1] - k;
      std::fill(column.get(), column.get() + hidden, 0.0f);
      add_pixel_gradient(by_pixel.step.data() + k, by_pixel.value.data() + k, count,
                         dh.get() + t0 * hidden, hidden, column.get());
      for (int64_t j = 0; j < hidden; ++j) dw1[j * input_size + i] += column[j];
    }
  }
  return -1;
}

void Policy::accumulate_gradient(const EpisodeBuffer& episode, const float* advantages,
                                 PolicyTensors& grads) const {
  const int64_t hidden = weights_.hidden, steps = episode.steps();
  std::vector<float> g(static_cast<size_t>(steps));
  for (int64_t t = 0; t < steps; ++t) g[t] = episode.dlogps()[t] * advantages[t];
  const auto dh = scratch<float>(steps * hidden);
  hidden_gradient(episode.hidden_states().data(), g.data(), steps, dh.get(), grads.w2.data());
  // dW1^T[i] += sum_t x_t[i] dh_t, summed per pixel: an episode has ~26 nonzeros a step but
  // only a few hundred distinct pixels, each of whose rows is then read and written once.
  const SparseRows& x = episode.inputs();
  ByPixel by_pixel;
  by_pixel.assign(x.offsets.data(), x.indices.data(), x.values.data(), steps, weights_.input_size);
  add_input_gradient(by_pixel, dh.get(), hidden, grads.w1t.data());
}

}  // namespace fastpong
