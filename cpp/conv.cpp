#include "fastpong/conv.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <numeric>
#include <stdexcept>
#include <type_traits>

#include "fastpong/dense.hpp"
#include "fastpong/parallel.hpp"

// The convolutions and the 576 -> 128 dense layer are GEMMs over output pixels (a dense layer is
// a 1x1 convolution of a 1x1 image). Their inner kernels are register-blocked by hand with GCC's
// generic vectors of 16 floats: a tile of pixels (or kernel rows) times up to 4 vectors of output
// channels stays in registers while the reduction streams by. The same source is compiled for
// AVX-512, AVX2 + FMA and the x86-64 baseline with target attributes, each with the tile that
// fits its register file, and the CPU picks one at load time (no -march=native needed).
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define FASTPONG_CONV_X86 1
#define FASTPONG_TARGET_AVX512 \
  __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")))
#define FASTPONG_TARGET_AVX2 __attribute__((target("avx2,fma")))
#else
#define FASTPONG_CONV_X86 0
#endif
#define FASTPONG_INLINE inline __attribute__((always_inline))
#define FASTPONG_INLINE_LAMBDA __attribute__((always_inline))

namespace fastpong {

SamePadding::SamePadding(int64_t in, int64_t kernel, int64_t stride)
    : out((in + stride - 1) / stride), before(0), after(0) {
  const int64_t total = std::max<int64_t>((out - 1) * stride + kernel - in, 0);
  before = total / 2;
  after = total - before;
}

namespace {

// ---------------------------------------------------------------------------------------------
// Vectors of 16 floats; on AVX2 a pair of registers, on the baseline four.

typedef float Vec __attribute__((vector_size(64)));
constexpr int64_t kLanes = 16;

FASTPONG_INLINE Vec load(const float* p) {
  Vec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
FASTPONG_INLINE void store(float* p, Vec v) { std::memcpy(p, &v, sizeof v); }
FASTPONG_INLINE Vec relu(Vec v) {
  const Vec zero = {};
  return v > zero ? v : zero;
}

// ---------------------------------------------------------------------------------------------
// Geometry.

// An activation buffer of NHWC images, side x side pixels of `channels` floats, whose interior
// starts at (pad, pad); the border stays zero: it is the 'same' padding of the layer reading it.
struct Buffer {
  int64_t side, channels, pad;
  int64_t image() const { return side * side * channels; }
};

// A layer as a GEMM over its output pixels: pixel (n, oy, ox) meets row r = (ky, kx, ci) of the
// kernel (Keras' (kh, kw, in, out) flattened) at input + in_offset + tap[r], and writes its
// `cols` outputs at output + out_offset.
struct GemmLayer {
  // in_side: the input's side before padding.
  GemmLayer(Buffer in_, int64_t in_side_, Buffer out_, int64_t kernel_, int64_t stride_)
      : in(in_), out(out_), in_side(in_side_), kernel(kernel_), stride(stride_),
        out_side(SamePadding(in_side_, kernel_, stride_).out),
        rows(kernel_ * kernel_ * in_.channels), cols(out_.channels) {
    for (int64_t ky = 0; ky < kernel; ++ky) {
      for (int64_t kx = 0; kx < kernel; ++kx) {
        for (int64_t c = 0; c < in.channels; ++c) {
          tap.push_back(static_cast<int32_t>((ky * in.side + kx) * in.channels + c));
        }
      }
    }
    for (int64_t oy = 0; oy < out_side; ++oy) {
      for (int64_t ox = 0; ox < out_side; ++ox) {
        in_at.push_back((stride * oy * in.side + stride * ox) * in.channels);
        out_at.push_back(((oy + out.pad) * out.side + ox + out.pad) * out.channels);
      }
    }
  }
  int64_t pixels() const { return out_side * out_side; }  // per image
  int64_t in_offset(int64_t p) const { return p / pixels() * in.image() + in_at[p % pixels()]; }
  int64_t out_offset(int64_t p) const { return p / pixels() * out.image() + out_at[p % pixels()]; }

  Buffer in, out;
  int64_t in_side, kernel, stride, out_side, rows, cols;
  std::vector<int32_t> tap;
  std::vector<int64_t> in_at, out_at;  // per pixel of one image
};

// ---------------------------------------------------------------------------------------------
// Micro-kernels. P pixels (or R kernel rows) by NV vectors of output channels.

// out[j] = act(bias + sum_r in[j][tap[r]] * w[r, :]) for P pixels, NV * 16 channels.
template <int P, int NV>
FASTPONG_INLINE void forward_tile(const float* const* in, const int32_t* tap, int64_t rows,
                                  const float* w, int64_t ldw, const float* bias,
                                  float* const* out, bool apply_relu) {
  Vec acc[P][NV];
  for (int v = 0; v < NV; ++v) {
    const Vec b = load(bias + v * kLanes);
    for (int j = 0; j < P; ++j) acc[j][v] = b;
  }
  for (int64_t r = 0; r < rows; ++r) {
    Vec wr[NV];
    for (int v = 0; v < NV; ++v) wr[v] = load(w + r * ldw + v * kLanes);
    const int32_t t = tap[r];
    for (int j = 0; j < P; ++j) {
      const float a = in[j][t];
      for (int v = 0; v < NV; ++v) acc[j][v] += a * wr[v];
    }
  }
  for (int j = 0; j < P; ++j) {
    for (int v = 0; v < NV; ++v) {
      store(out[j] + v * kLanes, apply_relu ? relu(acc[j][v]) : acc[j][v]);
    }
  }
}

// dw[r0 + i, :] += sum_p in[p][tap[r0 + i]] * g[p, :] for R kernel rows, NV * 16 channels.
template <int R, int NV>
FASTPONG_INLINE void weight_grad_tile(const float* in, const int64_t* pixel_in, const float* g,
                                      int64_t ldg, int64_t pixels, const int32_t* tap,
                                      float* dw, int64_t ldw) {
  Vec acc[R][NV] = {};
  int32_t t[R];
  for (int i = 0; i < R; ++i) t[i] = tap[i];
  for (int64_t p = 0; p < pixels; ++p) {
    Vec gp[NV];
    for (int v = 0; v < NV; ++v) gp[v] = load(g + p * ldg + v * kLanes);
    const float* ip = in + pixel_in[p];
    for (int i = 0; i < R; ++i) {
      const float a = ip[t[i]];
      for (int v = 0; v < NV; ++v) acc[i][v] += a * gp[v];
    }
  }
  for (int i = 0; i < R; ++i) {
    for (int v = 0; v < NV; ++v) {
      float* d = dw + i * ldw + v * kLanes;
      store(d, load(d) + acc[i][v]);
    }
  }
}

// din[j][tap[16 v] ...] += sum_c g[j][c] * wt[c, 16 v ...] for P pixels and NV vectors of kernel
// rows (wt is the kernel transposed, cols x rows; the 16 rows of a vector are 16 consecutive input
// channels of one tap, contiguous in the input).
template <int P, int NV>
FASTPONG_INLINE void input_grad_tile(const float* const* g, int64_t cols, const float* wt,
                                     int64_t ldwt, const int32_t* tap, float* const* din) {
  Vec acc[P][NV] = {};
  for (int64_t c = 0; c < cols; ++c) {
    Vec wc[NV];
    for (int v = 0; v < NV; ++v) wc[v] = load(wt + c * ldwt + v * kLanes);
    for (int j = 0; j < P; ++j) {
      const float a = g[j][c];
      for (int v = 0; v < NV; ++v) acc[j][v] += a * wc[v];
    }
  }
  for (int j = 0; j < P; ++j) {
    for (int v = 0; v < NV; ++v) {
      float* d = din[j] + tap[v * kLanes];
      store(d, load(d) + acc[j][v]);
    }
  }
}

// dw[i, :] += sum_k in[k][r0 + i] * g[k][c0 ...] for R rows and NV * 16 columns: the weight
// gradient over an arbitrary list of (input row, gradient row) pairs, for sums whose pairs do not
// form a regular grid (conv2d_1's sparse departures, below).
template <int R, int NV>
FASTPONG_INLINE void pair_grad_tile(const float* const* in, const float* const* g, int64_t pairs,
                                    int64_t r0, int64_t c0, float* dw, int64_t ldw) {
  Vec acc[R][NV] = {};
  for (int64_t k = 0; k < pairs; ++k) {
    Vec gk[NV];
    for (int v = 0; v < NV; ++v) gk[v] = load(g[k] + c0 + v * kLanes);
    const float* ik = in[k] + r0;
    for (int i = 0; i < R; ++i) {
      const float a = ik[i];
      for (int v = 0; v < NV; ++v) acc[i][v] += a * gk[v];
    }
  }
  for (int i = 0; i < R; ++i) {
    for (int v = 0; v < NV; ++v) {
      float* d = dw + i * ldw + v * kLanes;
      store(d, load(d) + acc[i][v]);
    }
  }
}

// out[j][c0 ...] += sum_r in[j][r] * w[r, c0 ...] for P (input row, output row) pairs and NV * 16
// columns: each pair's product summed over the rows in order, then added to its output row.
template <int P, int NV>
FASTPONG_INLINE void pair_forward_tile(const float* const* in, int64_t rows, const float* w,
                                       int64_t ldw, float* const* out, int64_t c0) {
  Vec acc[P][NV] = {};
  for (int64_t r = 0; r < rows; ++r) {
    Vec wr[NV];
    for (int v = 0; v < NV; ++v) wr[v] = load(w + r * ldw + c0 + v * kLanes);
    for (int j = 0; j < P; ++j) {
      const float a = in[j][r];
      for (int v = 0; v < NV; ++v) acc[j][v] += a * wr[v];
    }
  }
  for (int j = 0; j < P; ++j) {
    for (int v = 0; v < NV; ++v) {
      float* o = out[j] + c0 + v * kLanes;
      store(o, load(o) + acc[j][v]);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Layer-level loops over the micro-kernels, for one register budget (accumulator vectors) and
// widest chunk of output vectors. Instantiated once per instruction set below.

// Calls body(std::integral_constant<int, NV>, first column) for the chunks of `vectors` vectors of
// 16 columns, NV <= kMaxNV vectors at a time. The bodies are lambdas marked always_inline: inlined
// into the instruction-set-specific caller, they are compiled for its instruction set.
template <int kMaxNV, typename Body>
FASTPONG_INLINE void for_column_chunks(int64_t vectors, const Body& body) {
  constexpr int kNV4 = kMaxNV >= 4 ? 4 : 1, kNV3 = kMaxNV >= 3 ? 3 : 1, kNV2 = kMaxNV >= 2 ? 2 : 1;
  for (int64_t v0 = 0; v0 < vectors; v0 += kMaxNV) {
    const int64_t nv = std::min<int64_t>(kMaxNV, vectors - v0);
    const int64_t c0 = v0 * kLanes;
    if (nv == 4) body(std::integral_constant<int, kNV4>{}, c0);
    else if (nv == 3) body(std::integral_constant<int, kNV3>{}, c0);
    else if (nv == 2) body(std::integral_constant<int, kNV2>{}, c0);
    else body(std::integral_constant<int, 1>{}, c0);
  }
}

constexpr int tile_for(int budget, int nv) { return budget / nv > 0 ? budget / nv : 1; }

// `count` output pixels of layer L, the i-th reading its patch at in + pixel_in[i] and writing at
// out + pixel_out[i]: out = relu(patch . w + bias) (or without the ReLU).
template <int kBudget, int kMaxNV>
FASTPONG_INLINE void gemm_forward(const GemmLayer& L, const float* in, const float* w,
                                  const float* bias, float* out, const int64_t* pixel_in,
                                  const int64_t* pixel_out, int64_t count, bool apply_relu) {
  for_column_chunks<kMaxNV>(L.cols / kLanes, [&](auto nv, int64_t c0) FASTPONG_INLINE_LAMBDA {
    constexpr int NV = decltype(nv)::value;
    constexpr int P = tile_for(kBudget, NV);
    const float* ip[P];
    float* op[P];
    int64_t i = 0;
    for (; i + P <= count; i += P) {
      for (int j = 0; j < P; ++j) {
        ip[j] = in + pixel_in[i + j];
        op[j] = out + pixel_out[i + j] + c0;
      }
      forward_tile<P, NV>(ip, L.tap.data(), L.rows, w + c0, L.cols, bias + c0, op, apply_relu);
    }
    for (; i < count; ++i) {
      const float* ip1 = in + pixel_in[i];
      float* op1 = out + pixel_out[i] + c0;
      forward_tile<1, NV>(&ip1, L.tap.data(), L.rows, w + c0, L.cols, bias + c0, &op1,
                          apply_relu);
    }
  });
}

// dw[rows [r0, r1)] += in-patches^T g over `pixels` pixels (input offsets pixel_in, gradient rows
// g of L.cols floats). Rows are cut into tiles from r0 in steps of the tile height.
template <int kBudget, int kMaxNV>
FASTPONG_INLINE void gemm_weight_grad(const GemmLayer& L, const float* in, const int64_t* pixel_in,
                                      const float* g, int64_t pixels, int64_t r0, int64_t r1,
                                      float* dw) {
  for_column_chunks<kMaxNV>(L.cols / kLanes, [&](auto nv, int64_t c0) FASTPONG_INLINE_LAMBDA {
    constexpr int NV = decltype(nv)::value;
    constexpr int R = tile_for(kBudget, NV);
    int64_t r = r0;
    for (; r + R <= r1; r += R) {
      weight_grad_tile<R, NV>(in, pixel_in, g + c0, L.cols, pixels, L.tap.data() + r,
                              dw + r * L.cols + c0, L.cols);
    }
    for (; r < r1; ++r) {
      weight_grad_tile<1, NV>(in, pixel_in, g + c0, L.cols, pixels, L.tap.data() + r,
                              dw + r * L.cols + c0, L.cols);
    }
  });
}

// din (shaped like the layer's input buffer) += g * w^T scattered back over the patches of the
// listed output pixels (`count` of them, increasing; pixel q = image * L.pixels() + its place in
// the image, its gradient row g + q * L.cols). Every input element adds its pixels' terms in pixel
// order, whatever the tiles and the split into parts (by images).
template <int kBudget, int kMaxNV>
FASTPONG_INLINE void gemm_input_grad(const GemmLayer& L, const float* g, const float* wt,
                                     const int64_t* pixels, int64_t count, float* din) {
  // Tiles may span images: each pixel's sum is its own. (Tiles of one image each left conv2d_3's
  // 9 pixels a tile of 6 and three of 1.)
  for_column_chunks<kMaxNV>(L.rows / kLanes, [&](auto nv, int64_t r0) FASTPONG_INLINE_LAMBDA {
    constexpr int NV = decltype(nv)::value;
    constexpr int P = tile_for(kBudget, NV);
    const float* gp[P];
    float* dp[P];
    int64_t i = 0;
    for (; i + P <= count; i += P) {
      for (int j = 0; j < P; ++j) {
        gp[j] = g + pixels[i + j] * L.cols;
        dp[j] = din + L.in_offset(pixels[i + j]);
      }
      input_grad_tile<P, NV>(gp, L.cols, wt + r0, L.rows, L.tap.data() + r0, dp);
    }
    for (; i < count; ++i) {
      const float* g1 = g + pixels[i] * L.cols;
      float* d1 = din + L.in_offset(pixels[i]);
      input_grad_tile<1, NV>(&g1, L.cols, wt + r0, L.rows, L.tap.data() + r0, &d1);
    }
  });
}

// dw[r, c] += sum_k in[k][r] * g[k][c] for rows [0, rows) and cols columns (a multiple of 16),
// dw's rows ldw floats apart; each row's sum runs over the pairs in order.
template <int kBudget, int kMaxNV>
FASTPONG_INLINE void pair_weight_grad(const float* const* in, const float* const* g,
                                      int64_t pairs, int64_t rows, int64_t cols, float* dw,
                                      int64_t ldw) {
  for_column_chunks<kMaxNV>(cols / kLanes, [&](auto nv, int64_t c0) FASTPONG_INLINE_LAMBDA {
    constexpr int NV = decltype(nv)::value;
    constexpr int R = tile_for(kBudget, NV);
    int64_t r = 0;
    for (; r + R <= rows; r += R) pair_grad_tile<R, NV>(in, g, pairs, r, c0, dw + r * ldw + c0, ldw);
    for (; r < rows; ++r) pair_grad_tile<1, NV>(in, g, pairs, r, c0, dw + r * ldw + c0, ldw);
  });
}

// out[k][:] += in[k][0 .. rows) . w for each of `pairs` pairs (w: rows x cols, a multiple of 16).
// Each pair's sum is its own, whatever pairs share its tile.
template <int kBudget, int kMaxNV>
FASTPONG_INLINE void pair_forward(const float* const* in, float* const* out, int64_t pairs,
                                  int64_t rows, int64_t cols, const float* w) {
  for_column_chunks<kMaxNV>(cols / kLanes, [&](auto nv, int64_t c0) FASTPONG_INLINE_LAMBDA {
    constexpr int NV = decltype(nv)::value;
    constexpr int P = tile_for(kBudget, NV);
    int64_t k = 0;
    for (; k + P <= pairs; k += P) pair_forward_tile<P, NV>(in + k, rows, w, cols, out + k, c0);
    for (; k < pairs; ++k) pair_forward_tile<1, NV>(in + k, rows, w, cols, out + k, c0);
  });
}

struct KernelSet {
  const char* name;
  bool (*supported)();
  void (*forward)(const GemmLayer&, const float*, const float*, const float*, float*,
                  const int64_t*, const int64_t*, int64_t, bool);
  void (*weight_grad)(const GemmLayer&, const float*, const int64_t*, const float*, int64_t,
                      int64_t, int64_t, float*);
  void (*input_grad)(const GemmLayer&, const float*, const float*, const int64_t*, int64_t,
                     float*);
  void (*pair_grad)(const float* const*, const float* const*, int64_t, int64_t, int64_t, float*,
                    int64_t);
  void (*pair_forward)(const float* const*, float* const*, int64_t, int64_t, int64_t,
                       const float*);
};

#define FASTPONG_KERNEL_SET(NAME, TARGET, BUDGET, MAXNV)                                        \
  TARGET void NAME##_forward(const GemmLayer& L, const float* in, const float* w,               \
                             const float* bias, float* out, const int64_t* pixel_in,             \
                             const int64_t* pixel_out, int64_t count, bool relu) {               \
    gemm_forward<BUDGET, MAXNV>(L, in, w, bias, out, pixel_in, pixel_out, count, relu);          \
  }                                                                                              \
  TARGET void NAME##_weight_grad(const GemmLayer& L, const float* in, const int64_t* pixel_in,   \
                                 const float* g, int64_t pixels, int64_t r0, int64_t r1,         \
                                 float* dw) {                                                    \
    gemm_weight_grad<BUDGET, MAXNV>(L, in, pixel_in, g, pixels, r0, r1, dw);                     \
  }                                                                                              \
  TARGET void NAME##_input_grad(const GemmLayer& L, const float* g, const float* wt,             \
                                const int64_t* pixels, int64_t count, float* din) {              \
    gemm_input_grad<BUDGET, MAXNV>(L, g, wt, pixels, count, din);                                \
  }                                                                                              \
  TARGET void NAME##_pair_grad(const float* const* in, const float* const* g, int64_t pairs,     \
                               int64_t rows, int64_t cols, float* dw, int64_t ldw) {             \
    pair_weight_grad<BUDGET, MAXNV>(in, g, pairs, rows, cols, dw, ldw);                          \
  }                                                                                              \
  TARGET void NAME##_pair_forward(const float* const* in, float* const* out, int64_t pairs,      \
                                  int64_t rows, int64_t cols, const float* w) {                  \
    pair_forward<BUDGET, MAXNV>(in, out, pairs, rows, cols, w);                                  \
  }

// Budgets in vectors of 16 floats: AVX-512 has 32 registers of one vector (24 accumulators
// leave room for the weights); AVX2 16 registers of half a vector; the baseline 16 of a quarter.
#if FASTPONG_CONV_X86
FASTPONG_KERNEL_SET(avx512, FASTPONG_TARGET_AVX512, 24, 4)
FASTPONG_KERNEL_SET(avx2, FASTPONG_TARGET_AVX2, 6, 2)
#endif
FASTPONG_KERNEL_SET(portable, , 3, 1)

bool avx512_supported() {
#if FASTPONG_CONV_X86
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
#else
  return false;
#endif
}
bool avx2_supported() {
#if FASTPONG_CONV_X86
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}
bool always() { return true; }

const KernelSet kKernelSets[] = {
#if FASTPONG_CONV_X86
    {"avx512", avx512_supported, avx512_forward, avx512_weight_grad, avx512_input_grad,
     avx512_pair_grad, avx512_pair_forward},
    {"avx2", avx2_supported, avx2_forward, avx2_weight_grad, avx2_input_grad, avx2_pair_grad,
     avx2_pair_forward},
#endif
    {"portable", always, portable_forward, portable_weight_grad, portable_input_grad,
     portable_pair_grad, portable_pair_forward},
};

const KernelSet* best_kernel_set() {
  for (const KernelSet& k : kKernelSets) {
    if (k.supported()) return &k;
  }
  return &kKernelSets[std::size(kKernelSets) - 1];
}

std::atomic<const KernelSet*> g_kernels{best_kernel_set()};

// Whether batched forward passes start from the zero frame's activations (forward_frames; on by
// default; off only to measure what it saves, and to test that the results agree either way).
std::atomic<bool> g_skip_zero_frame{true};

// ---------------------------------------------------------------------------------------------
// The lab's network.

struct ConvSpec {
  int64_t filters, kernel, stride;
};
constexpr ConvSpec kConvSpecs[ConvPolicy::kConvLayers] = {{32, 5, 2}, {48, 5, 2}, {64, 3, 2},
                                                          {64, 3, 2}};

// The buffers between layers and the GEMM layers (conv2d_1..3); conv2d_0, whose input is the
// sparse frame change, is done apart, and the dense head by DensePolicy (dense.cpp).
struct Network {
  Network() {
    int64_t side = ConvPolicy::kInputSide, channels = 1;
    for (int l = 0; l < ConvPolicy::kConvLayers; ++l) {
      const ConvSpec& s = kConvSpecs[l];
      const SamePadding pad(side, s.kernel, s.stride);
      if (l == 0) {
        input_pad = pad.before;
        first_out_side = pad.out;
      } else {
        // The previous layer writes into this layer's zero-padded input.
        buffers[l - 1] = {side + pad.before + pad.after, channels, pad.before};
      }
      sides[l] = side;
      side = pad.out;
      channels = s.filters;
    }
    buffers[ConvPolicy::kConvLayers - 1] = {side, channels, 0};  // flattened: (h, w, c) order
    flat = side * side * channels;
    for (int l = 1; l < ConvPolicy::kConvLayers; ++l) {
      layers.emplace_back(buffers[l - 1], sides[l], buffers[l], kConvSpecs[l].kernel,
                          kConvSpecs[l].stride);
    }
    for (const GemmLayer& L : layers) {
      if (L.in.channels % kLanes != 0 || L.cols % kLanes != 0) {
        throw std::logic_error("conv: channels must be multiples of 16");
      }
    }
  }
  int64_t input_pad = 0, first_out_side = 0, flat = 0;
  int64_t sides[ConvPolicy::kConvLayers] = {};  // input side of each conv layer, unpadded
  Buffer buffers[ConvPolicy::kConvLayers];  // outputs of conv2d_0..3 (inputs of the next)
  std::vector<GemmLayer> layers;
};

const Network& network() {
  static const Network net;
  return net;
}

void first_layer_dirty(const float* x, uint8_t* dirty);

// Calls body(oy, ox, tap) for every output (oy, ox) of a layer (kernel k, stride st, padding
// `pad` before, out_side outputs a side) whose window holds input position (iy, ix), tap being
// that input's place in the window, ky * k + kx: the outputs with 0 <= iy + pad - st * oy < k.
template <typename Body>
FASTPONG_INLINE void for_each_window(int64_t iy, int64_t ix, int64_t k, int64_t st, int64_t pad,
                                     int64_t out_side, const Body& body) {
  const int64_t oy0 = std::max<int64_t>(0, (iy + pad - k + st) / st);
  const int64_t oy1 = std::min(out_side - 1, (iy + pad) / st);
  const int64_t ox0 = std::max<int64_t>(0, (ix + pad - k + st) / st);
  const int64_t ox1 = std::min(out_side - 1, (ix + pad) / st);
  for (int64_t oy = oy0; oy <= oy1; ++oy) {
    for (int64_t ox = ox0; ox <= ox1; ++ox) {
      body(oy, ox, (iy + pad - st * oy) * k + (ix + pad - st * ox));
    }
  }
}

// Calls body(v, oy, ox, tap) for every nonzero pixel v of one input image x (a frame change)
// and every conv2d_0 output (oy, ox) whose window holds it, tap being its place in the window.
template <typename Body>
FASTPONG_INLINE void for_each_input_window(const float* x, const Body& body) {
  const Network& net = network();
  const int64_t side = ConvPolicy::kInputSide;
  for (int64_t iy = 0; iy < side; ++iy) {
    for (int64_t ix = 0; ix < side; ++ix) {
      const float v = x[iy * side + ix];
      if (v == 0.0f) continue;
      for_each_window(iy, ix, kConvSpecs[0].kernel, kConvSpecs[0].stride, net.input_pad,
                      net.first_out_side,
                      [&](int64_t oy, int64_t ox, int64_t tap) FASTPONG_INLINE_LAMBDA {
                        body(v, oy, ox, tap);
                      });
    }
  }
}

// conv2d_0 for m images: out = relu(bias + W * x), x a 40x40 single-channel image that is almost
// all zeros. Each nonzero pixel is scattered into the outputs whose windows hold it (at most 3x3
// of them), rather than every output gathering its 25 taps. With dirty_masks (m images of
// first_layer_dirty), only the outputs a nonzero pixel reaches are written; without, all are.
FASTPONG_SIMD_CLONES
void first_layer_forward(const float* x, int64_t m, const float* w, const float* bias,
                         const uint8_t* dirty_masks, float* out) {
  const Network& net = network();
  const Buffer& b = net.buffers[0];
  const int64_t out_side = net.first_out_side, c = b.channels, pixels = out_side * out_side;
  const auto at = [&](int64_t oy, int64_t ox) { return ((oy + b.pad) * b.side + ox + b.pad) * c; };
  for (int64_t n = 0; n < m; ++n) {
    float* o = out + n * b.image();
    const float* xi = x + n * ConvPolicy::kInputSize;
    const uint8_t* dirty = dirty_masks == nullptr ? nullptr : dirty_masks + n * pixels;
    // Every output starts at the bias; with dirty masks, only those that a nonzero pixel reaches.
    for (int64_t p = 0; p < pixels; ++p) {
      if (dirty != nullptr && !dirty[p]) continue;
      float* op = o + at(p / out_side, p % out_side);
#pragma omp simd
      for (int64_t j = 0; j < c; ++j) op[j] = bias[j];
    }
    for_each_input_window(xi, [&](float v, int64_t oy, int64_t ox, int64_t tap)
                                  FASTPONG_INLINE_LAMBDA {
      const float* wt = w + tap * c;
      float* op = o + at(oy, ox);
#pragma omp simd
      for (int64_t j = 0; j < c; ++j) op[j] += v * wt[j];
    });
    for (int64_t p = 0; p < pixels; ++p) {
      if (dirty != nullptr && !dirty[p]) continue;
      float* op = o + at(p / out_side, p % out_side);
#pragma omp simd
      for (int64_t j = 0; j < c; ++j) op[j] = op[j] > 0.0f ? op[j] : 0.0f;
    }
  }
}

// dW0 += sum over nonzero input pixels of x * g at the outputs whose windows hold them; g is
// conv2d_0's output gradient, compact (m, 20, 20, 32).
FASTPONG_SIMD_CLONES
void first_layer_weight_grad(const float* x, int64_t m, const float* g, float* dw) {
  const int64_t out_side = network().first_out_side, c = kConvSpecs[0].filters;
  for (int64_t n = 0; n < m; ++n) {
    const float* gi = g + n * out_side * out_side * c;
    for_each_input_window(x + n * ConvPolicy::kInputSize,
                          [&](float v, int64_t oy, int64_t ox, int64_t tap) FASTPONG_INLINE_LAMBDA {
      float* d = dw + tap * c;
      const float* gp = gi + (oy * out_side + ox) * c;
#pragma omp simd
      for (int64_t j = 0; j < c; ++j) d[j] += v * gp[j];
    });
  }
}

// db0 += g summed over the positions whose window holds a nonzero input pixel (dirty_masks, m
// images of first_layer_dirty; the others of g are not computed).
FASTPONG_SIMD_CLONES
void add_first_layer_bias_grad(const uint8_t* dirty_masks, int64_t m, const float* g, float* db) {
  const Network& net = network();
  const int64_t pixels = net.first_out_side * net.first_out_side, c = kConvSpecs[0].filters;
  for (int64_t n = 0; n < m; ++n) {
    const uint8_t* dirty = dirty_masks + n * pixels;
    for (int64_t p = 0; p < pixels; ++p) {
      if (!dirty[p]) continue;
      const float* gp = g + (n * pixels + p) * c;
      for (int64_t j = 0; j < c; ++j) db[j] += gp[j];
    }
  }
}

// Work (multiply-adds) below which a kernel stays on one thread: about a millisecond of one core.
// Waking the second thread costs microseconds when its core is idle but milliseconds when another
// process keeps it busy (a forward pass of 8 frames, ~0.3 ms, ran 10x slower on two threads of a
// shared machine than on one); only work that dwarfs that is shared.
constexpr int64_t kParallelMinMacs = int64_t{1} << 26;
constexpr int64_t kMacsPerFrame = 5300000;  // the lab's network, about 5.3M multiply-adds
// Steps from which the backward pass's per-step bookkeeping (which outputs a frame change
// reaches, ~1 us a step) is shared between threads.
constexpr int64_t kParallelMinSteps = 64;
// Batches from this size on skip the conv outputs that equal the zero frame's (forward_frames).
constexpr int64_t kBackgroundMinFrames = 2;

// GEMM layers (conv2d_1, conv2d_2) whose outputs a batched forward pass builds from the zero
// frame's pre-activations plus the departures of their input (departure_forward). conv2d_3 has
// 9 outputs over 25 inputs, most of them dirty: there the departures would save little.
constexpr int kDepartureLayers = 2;

// Activations of m frames through the network: a[l] is conv2d_l's output in the buffer the next
// layer reads (zero borders); the last, (m, 576), is the flattened input of the dense head.
struct Activations {
  // Room for m frames. Buffers only grow, and only interiors are ever written, so the zero
  // borders (the padding) survive reuse.
  void reserve(int64_t m) {
    const Network& net = network();
    for (int l = 0; l < ConvPolicy::kConvLayers; ++l) {
      const size_t size = static_cast<size_t>(m * net.buffers[l].image());
      if (a[l].size() < size) a[l].resize(size, 0.0f);
    }
  }
  std::vector<float> a[ConvPolicy::kConvLayers];
  // Only in the zero frame's activations (the background): the pre-activations (before the
  // ReLU, compact: pixels x channels) of the GEMM layers forward_frames builds from departures.
  std::vector<float> pre[kDepartureLayers];
};

// Which of conv2d_0's outputs differ from the zero frame's: those whose window holds a nonzero
// pixel of x (one image), as out_side^2 flags.
void first_layer_dirty(const float* x, uint8_t* dirty) {
  const int64_t out_side = network().first_out_side;
  std::fill(dirty, dirty + out_side * out_side, 0);
  for_each_input_window(x, [&](float, int64_t oy, int64_t ox, int64_t) {
    dirty[oy * out_side + ox] = 1;
  });
}

// The same one layer up: an output of L is dirty when its window holds a dirty input.
void window_dirty(const GemmLayer& L, const uint8_t* in_dirty, uint8_t* out_dirty) {
  // Each dirty input marks the outputs whose windows hold it: a few dozen of them, where asking
  // every output about each of its taps took thousands of tests a frame.
  std::fill(out_dirty, out_dirty + L.out_side * L.out_side, 0);
  for (int64_t iy = 0; iy < L.in_side; ++iy) {
    for (int64_t ix = 0; ix < L.in_side; ++ix) {
      if (!in_dirty[iy * L.in_side + ix]) continue;
      for_each_window(iy, ix, L.kernel, L.stride, L.in.pad, L.out_side,
                      [&](int64_t oy, int64_t ox, int64_t) FASTPONG_INLINE_LAMBDA {
                        out_dirty[oy * L.out_side + ox] = 1;
                      });
    }
  }
}

// The departures of a GEMM layer's input from the zero frame's over m steps: for each position
// flagged in dirty_masks (m images of L.in_side^2 flags), the row a - zero_a of its channels. Step
// n's rows start at row first[n]; a row of zeros (every channel clipped by the ReLU here and in the
// zero frame) is marked, and meets nothing. What departure_forward and departure_weight_grad
// build on. Kept from call to call.
struct DepartureRows {
  std::vector<int64_t> first;
  std::vector<float> values;
  std::vector<uint8_t> nonzero;
};

// row = act - zero over c channels; whether any is nonzero. A function of its own so that it is
// vectorized, for AVX2 too (the loop with a bool reduction inside the caller was not).
FASTPONG_SIMD_CLONES
bool departure_row(const float* act, const float* zero, int64_t c, float* row) {
  int any = 0;
#pragma omp simd reduction(| : any)
  for (int64_t ci = 0; ci < c; ++ci) {
    const float d = act[ci] - zero[ci];
    row[ci] = d;
    any |= d != 0.0f;
  }
  return any != 0;
}

void compute_departure_rows(const GemmLayer& L, const uint8_t* dirty_masks, const float* a,
                            const float* zero_a, int64_t m, bool parallel, DepartureRows& rows) {
  const int64_t side = L.in_side, c = L.in.channels, pad = L.in.pad;
  rows.first.resize(static_cast<size_t>(m + 1));
  rows.first[0] = 0;
  for (int64_t n = 0; n < m; ++n) {
    int64_t count = 0;
    for (int64_t p = 0; p < side * side; ++p) count += dirty_masks[n * side * side + p];
    rows.first[n + 1] = rows.first[n] + count;
  }
  rows.values.resize(static_cast<size_t>(rows.first[m] * c));
  rows.nonzero.resize(static_cast<size_t>(rows.first[m]));
  parallel_for(m, parallel, [&](int64_t n) {
    const uint8_t* dirty = dirty_masks + n * side * side;
    int64_t r = rows.first[n];
    for (int64_t iy = 0; iy < side; ++iy) {
      for (int64_t ix = 0; ix < side; ++ix) {
        if (!dirty[iy * side + ix]) continue;
        const int64_t at = ((iy + pad) * L.in.side + ix + pad) * c;
        const float* act = a + n * L.in.image() + at;
        const float* zero = zero_a + at;
        rows.nonzero[r] = departure_row(act, zero, c, rows.values.data() + r * c);
        ++r;
      }
    }
  });
}

// Calls body(n, oy, ox, tap, row) for every nonzero departure row (rows.values + row, in step and
// position order) and every output (oy, ox) of L whose window holds its position, at `tap`.
template <typename Body>
FASTPONG_INLINE void for_each_departure_window(const GemmLayer& L, const uint8_t* dirty_masks,
                                               int64_t m, const DepartureRows& rows,
                                               const Body& body) {
  const int64_t side = L.in_side, c = L.in.channels;
  for (int64_t n = 0; n < m; ++n) {
    const uint8_t* dirty = dirty_masks + n * side * side;
    int64_t r = rows.first[n];
    for (int64_t iy = 0; iy < side; ++iy) {
      for (int64_t ix = 0; ix < side; ++ix) {
        if (!dirty[iy * side + ix]) continue;
        const int64_t row = r++;
        if (!rows.nonzero[row]) continue;
        const float* values = rows.values.data() + row * c;
        for_each_window(iy, ix, L.kernel, L.stride, L.in.pad, L.out_side,
                        [&](int64_t oy, int64_t ox, int64_t tap) FASTPONG_INLINE_LAMBDA {
                          body(n, oy, ox, tap, values);
                        });
      }
    }
  }
}

// Buffers of forward_frames, kept from call to call in each thread.
struct ForwardScratch {
  std::vector<uint8_t> dirty_in, dirty_out;
  std::vector<int64_t> pixel_in, pixel_out;
  DepartureRows departures;
  std::vector<float> pre;
  std::vector<std::vector<const float*>> pair_in;
  std::vector<std::vector<float*>> pair_out;
};

// The dirty outputs (dirty_out) of GEMM layer L for m frames whose input buffers are `in` (the
// zero frame's: zero_in) and whose inputs depart from the zero frame's only at the positions
// flagged in dirty_in: out = relu(zero frame's pre-activation + sum over the departures d = in -
// zero_in in the output's window of d . w[tap]). A frame change moves ~8% of conv2d_1's inputs
// and ~26% of conv2d_2's, so this is 2 to 3 times fewer multiply-adds than computing the dirty
// outputs from their whole windows. The departures meeting one tap are one small GEMM
// (pair_forward), taken tap after tap, so every output adds its terms in tap order whatever the
// batch. The clean outputs are not written.
void departure_forward(const KernelSet& kernels, const GemmLayer& L, const float* in,
                       const float* zero_in, const float* zero_pre, const uint8_t* dirty_in,
                       const uint8_t* dirty_out, int64_t m, const float* w, float* out,
                       ForwardScratch& sc) {
  const int64_t c = L.in.channels, cols = L.cols, pixels = L.pixels();
  const int64_t taps = L.kernel * L.kernel;
  sc.pre.resize(static_cast<size_t>(m * pixels * cols));
  for (int64_t p = 0; p < m * pixels; ++p) {
    if (!dirty_out[p]) continue;
    const float* from = zero_pre + (p % pixels) * cols;
    std::copy(from, from + cols, sc.pre.data() + p * cols);
  }
  compute_departure_rows(L, dirty_in, in, zero_in, m, false, sc.departures);
  sc.pair_in.resize(static_cast<size_t>(taps));
  sc.pair_out.resize(static_cast<size_t>(taps));
  for (int64_t t = 0; t < taps; ++t) {
    sc.pair_in[t].clear();
    sc.pair_out[t].clear();
  }
  for_each_departure_window(L, dirty_in, m, sc.departures,
                            [&](int64_t n, int64_t oy, int64_t ox, int64_t tap, const float* row)
                                FASTPONG_INLINE_LAMBDA {
    sc.pair_in[tap].push_back(row);
    sc.pair_out[tap].push_back(sc.pre.data() + (n * pixels + oy * L.out_side + ox) * cols);
  });
  for (int64_t t = 0; t < taps; ++t) {
    kernels.pair_forward(sc.pair_in[t].data(), sc.pair_out[t].data(),
                         static_cast<int64_t>(sc.pair_in[t].size()), c, cols, w + t * c * cols);
  }
  for (int64_t p = 0; p < m * pixels; ++p) {
    if (!dirty_out[p]) continue;
    const float* from = sc.pre.data() + p * cols;
    float* to = out + L.out_offset(p);
    for (int64_t j = 0; j < cols; ++j) to[j] = from[j] > 0.0f ? from[j] : 0.0f;
  }
}

// Frames [n0, n1) of x through the network, into acts (which holds them from row n0 on: pass
// n0 = 0 for activations of exactly these frames), up to the flattened conv output.
//
// With `background` (the activations of an all-zero frame), a conv output whose window sees only
// inputs equal to the zero frame's is copied from it instead of computed: a frame change has ~17
// nonzeros of 1600, and only ~8% of conv2d_0's and ~26% of conv2d_1's outputs see any of them.
// The copy is what the computation would give, bit for bit (same inputs, same sums in the same
// order). The outputs that do see a change are built from the zero frame's pre-activations and
// the departures (departure_forward) in conv2d_1 and conv2d_2, and computed from their windows in
// conv2d_3: the same values up to float32 rounding as computing every output, though not the same
// bits. Each frame's result depends on that frame alone, whatever the batch and threads.
void forward_frames(const ConvPolicy& policy, const float* x, int64_t n0, int64_t n1,
                    Activations& acts, const Activations* background, bool for_backward) {
  const Network& net = network();
  const KernelSet& kernels = *g_kernels.load(std::memory_order_relaxed);
  thread_local ForwardScratch sc;
  const int64_t m = n1 - n0;
  const float* xm = x + n0 * ConvPolicy::kInputSize;
  float* a0 = acts.a[0].data() + n0 * net.buffers[0].image();
  const int64_t first_pixels = net.first_out_side * net.first_out_side;
  if (background != nullptr) {
    sc.dirty_in.resize(static_cast<size_t>(m * first_pixels));
    for (int64_t n = 0; n < m; ++n) {
      first_layer_dirty(xm + n * ConvPolicy::kInputSize, sc.dirty_in.data() + n * first_pixels);
    }
  }
  // With the background, conv2d_0's output is read only where it departs from the zero frame's
  // (the departures of conv2d_1, and the backward pass's gate at the same places): the rest of
  // a0 is not written.
  first_layer_forward(xm, m, policy.tensor(0), policy.tensor(1),
                      background != nullptr ? sc.dirty_in.data() : nullptr, a0);
  for (size_t l = 0; l < net.layers.size(); ++l) {
    const GemmLayer& L = net.layers[l];
    const float* in = acts.a[l].data() + n0 * L.in.image();
    float* out = acts.a[l + 1].data() + n0 * L.out.image();
    const float* w = policy.tensor(2 * static_cast<int>(l) + 2);
    sc.pixel_in.clear();
    sc.pixel_out.clear();
    const int64_t pixels = m * L.pixels();
    if (background != nullptr) {
      sc.dirty_out.resize(static_cast<size_t>(pixels));
      const int64_t in_pixels = L.in_side * L.in_side;
      for (int64_t n = 0; n < m; ++n) {
        window_dirty(L, sc.dirty_in.data() + n * in_pixels, sc.dirty_out.data() + n * L.pixels());
      }
      const bool from_departures = l < static_cast<size_t>(kDepartureLayers);
      const float* clean = background->a[l + 1].data();
      // conv2d_1's clean outputs are read by the backward pass's ReLU gate alone (the next layer
      // reads only its departures), and no sum uses the gate there any more: ConvBackward's
      // add_second_layer_sums takes the zero frame's. A forward pass leaves them unwritten; the
      // backward's copy is now work nothing needs, left until the gate skips those outputs too.
      const bool copy_clean = for_backward || l != 0;
      for (int64_t p = 0; p < pixels; ++p) {
        if (!sc.dirty_out[p]) {
          if (!copy_clean) continue;
          const float* from = clean + L.out_at[p % L.pixels()];
          std::copy(from, from + L.cols, out + L.out_offset(p));
        } else if (!from_departures) {
          sc.pixel_in.push_back(L.in_offset(p));
          sc.pixel_out.push_back(L.out_offset(p));
        }
      }
      if (from_departures) {
        departure_forward(kernels, L, in, background->a[l].data(), background->pre[l].data(),
                          sc.dirty_in.data(), sc.dirty_out.data(), m, w, out, sc);
      }
      std::swap(sc.dirty_in, sc.dirty_out);
    } else {
      for (int64_t p = 0; p < pixels; ++p) {
        sc.pixel_in.push_back(L.in_offset(p));
        sc.pixel_out.push_back(L.out_offset(p));
      }
    }
    kernels.forward(L, in, w, policy.tensor(2 * static_cast<int>(l) + 3), out,
                    sc.pixel_in.data(), sc.pixel_out.data(),
                    static_cast<int64_t>(sc.pixel_in.size()), true);
  }
}

// The activations of one all-zero frame, computed in full, and the pre-activations of the layers
// departure_forward builds on: the background of forward_frames.
void zero_frame_activations(const ConvPolicy& policy, Activations& background) {
  static const std::vector<float> zero(static_cast<size_t>(ConvPolicy::kInputSize), 0.0f);
  background.reserve(1);
  forward_frames(policy, zero.data(), 0, 1, background, nullptr, /*for_backward=*/true);
  const Network& net = network();
  const KernelSet& kernels = *g_kernels.load(std::memory_order_relaxed);
  for (int l = 0; l < kDepartureLayers; ++l) {
    const GemmLayer& L = net.layers[l];
    std::vector<int64_t> pixel_in, pixel_out;
    for (int64_t p = 0; p < L.pixels(); ++p) {
      pixel_in.push_back(L.in_offset(p));
      pixel_out.push_back(p * L.cols);
    }
    background.pre[l].assign(static_cast<size_t>(L.pixels() * L.cols), 0.0f);
    kernels.forward(L, background.a[l].data(), policy.tensor(2 * l + 2), policy.tensor(2 * l + 3),
                    background.pre[l].data(), pixel_in.data(), pixel_out.data(), L.pixels(),
                    false);
  }
}

void forward_batch(const ConvPolicy& policy, const float* x, int64_t m, Activations& acts,
                   const Activations* background, bool for_backward) {
  const int parts = parts_for(m > 1 && m * kMacsPerFrame >= kParallelMinMacs);
  run_in_parts(std::min<int64_t>(parts, m), [&](int part, int count) {
    forward_frames(policy, x, m * part / count, m * (part + 1) / count, acts, background,
                   for_backward);
  });
}

// kernel (rows, cols) -> (cols, rows)
std::vector<float> transposed(const float* w, int64_t rows, int64_t cols) {
  std::vector<float> t(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) t[c * rows + r] = w[r * cols + c];
  }
  return t;
}

// compact[p, :] = d[at(p), :] where act[at(p), :] > 0 (the ReLU gate), else 0, for the m * pixels
// output pixels of layer L, at(p) being pixel p's offset in L's (padded) output buffer.
FASTPONG_SIMD_CLONES
void gate_gradient(const GemmLayer& L, int64_t m, const float* d, const float* act,
                   float* compact) {
  const int64_t c = L.cols;
  for (int64_t p = 0; p < m * L.pixels(); ++p) {
    const int64_t at = L.out_offset(p);
    float* out = compact + p * c;
    for (int64_t j = 0; j < c; ++j) out[j] = act[at + j] > 0.0f ? d[at + j] : 0.0f;
  }
}

// One image n of first_layer_output_grad (below).
FASTPONG_SIMD_CLONES_WIDE
void first_layer_output_grad_image(const GemmLayer& L, int64_t n, const uint8_t* dirty_masks,
                                   const float* a0, const float* g2, const float* w_taps, float* g1,
                                   float* ungated) {
  const Network& net = network();
  constexpr int64_t c = kConvSpecs[0].filters;  // a compile-time width keeps acc in registers
  const int64_t side = net.first_out_side, pixels = side * side;
  const int64_t pad = L.in.pad, k = L.kernel, s = L.stride;
  const uint8_t* dirty = dirty_masks + n * pixels;
  float* un = ungated + n * c;
  std::fill(un, un + c, 0.0f);
  // Four sums over the output channels, interleaved: one sum alone waits on each multiply-add's
  // result before the next (a chain of 432 at a position), which held the loop to a quarter of
  // the core's rate.
  constexpr int64_t kSums = 4;
  float acc[kSums][c];
  for (int64_t iy = 0; iy < side; ++iy) {
    for (int64_t ix = 0; ix < side; ++ix) {
      if (!dirty[iy * side + ix]) continue;
      std::fill(&acc[0][0], &acc[0][0] + kSums * c, 0.0f);
      for_each_window(iy, ix, k, s, pad, L.out_side,
                      [&](int64_t oy, int64_t ox, int64_t tap) FASTPONG_INLINE_LAMBDA {
        const float* gq = g2 + (n * L.pixels() + oy * L.out_side + ox) * L.cols;
        // acc += W1[tap]^T g2[q]: a row of the tap's block per output channel
        const float* wtap = w_taps + tap * L.cols * c;
        int64_t co = 0;
        for (; co + kSums <= L.cols; co += kSums) {
          const float* w = wtap + co * c;
#pragma omp simd
          for (int64_t j = 0; j < c; ++j) {
            acc[0][j] += gq[co] * w[j];
            acc[1][j] += gq[co + 1] * w[c + j];
            acc[2][j] += gq[co + 2] * w[2 * c + j];
            acc[3][j] += gq[co + 3] * w[3 * c + j];
          }
        }
        for (; co < L.cols; ++co) {
          const float gv = gq[co];
          const float* w = wtap + co * c;
#pragma omp simd
          for (int64_t j = 0; j < c; ++j) acc[0][j] += gv * w[j];
        }
      });
      const float* act = a0 + n * L.in.image() + ((iy + pad) * L.in.side + ix + pad) * c;
      float* out = g1 + (n * pixels + iy * side + ix) * c;
#pragma omp simd
      for (int64_t j = 0; j < c; ++j) {
        const float sum = (acc[0][j] + acc[1][j]) + (acc[2][j] + acc[3][j]);
        un[j] += sum;
        out[j] = act[j] > 0.0f ? sum : 0.0f;
      }
    }
  }
}

// conv2d_0's output gradient, for conv2d_1 = L, at the only positions dW0 needs: those whose
// window holds a nonzero input pixel (~8% of them; dirty_masks: m images of first_layer_dirty).
// g1[n, pos, :] = gate(a0) * sum over the conv2d_1 outputs q whose windows hold pos of
// W1[tap]^T g2[n, q, :] (w_taps: W1 tap by tap, each tap's block (48, 32) transposed, see
// taps_transposed); other positions of g1 are left as they are. ungated[n, :] gets the sum of the
// ungated values over those positions, for the bias gradient.
void first_layer_output_grad(const GemmLayer& L, const uint8_t* dirty_masks, const float* a0,
                             const float* g2, const float* w_taps, int64_t m, float* g1,
                             float* ungated) {
  const int64_t work = m * 40 * L.in.channels * L.cols * 9;  // ~40 positions of 9 taps each
  parallel_for(m, work >= kParallelMinMacs, [&](int64_t n) {
    first_layer_output_grad_image(L, n, dirty_masks, a0, g2, w_taps, g1, ungated);
  });
}

// A GEMM layer's kernel (rows = taps x c input channels, cols) as one block per tap, each the
// tap's (c, cols) slice transposed to (cols, c): what first_layer_output_grad reads for a window,
// 6 KB in one piece rather than 48 rows of 128 bytes 3 KB apart.
void taps_transposed(const GemmLayer& L, const float* w, std::vector<float>& out) {
  const int64_t c = L.in.channels, taps = L.kernel * L.kernel;
  out.resize(static_cast<size_t>(L.rows * L.cols));
  for (int64_t t = 0; t < taps; ++t) {
    for (int64_t co = 0; co < L.cols; ++co) {
      for (int64_t ci = 0; ci < c; ++ci) {
        out[(t * L.cols + co) * c + ci] = w[(t * c + ci) * L.cols + co];
      }
    }
  }
}

// The (departure row, gradient row) pairs of a layer's sparse weight gradient (below), one list
// per tap of its kernel, and the departure rows they point into. Kept from call to call.
struct DeparturePairs {
  DepartureRows departures;
  std::vector<std::vector<const float*>> in, grad;
};

// dW += sum over m steps of (a - zero frame's a) patches^T g, for a GEMM layer L (conv2d_1 or
// conv2d_2) whose input a departs from the zero frame's only at the positions flagged in
// dirty_masks (m images of L.in_side^2 flags: first_layer_dirty for conv2d_1, then window_dirty
// one layer up). A frame change touches ~8% of conv2d_0's outputs and ~26% of conv2d_1's, so
// this is the sparse part of L's weight gradient; the rest, the zero frame's patches times the
// step-summed g, is added once per call (ConvBackward::finish).
//
// Each departure row d = a - zero a at a position meets the gradient rows g[q] of the outputs q
// whose windows hold the position, at tap t of q's window: dW[t] (c x cols) gets d^T g[q]. The
// pairs are listed per tap, then each tap's block of dW is one small GEMM over its list
// (pair_grad: a tile of dW stays in registers while the pairs stream by). Sums run over the pairs
// in step, position, window order whatever the thread count.
void departure_weight_grad(const GemmLayer& L, const uint8_t* dirty_masks, const float* a,
                           const float* zero_a, const float* g, int64_t m, DeparturePairs& pairs,
                           float* dw) {
  const KernelSet& kernels = *g_kernels.load(std::memory_order_relaxed);
  const int64_t c = L.in.channels, cols = L.cols, taps = L.kernel * L.kernel;
  pairs.in.resize(static_cast<size_t>(taps));
  pairs.grad.resize(static_cast<size_t>(taps));
  const bool parallel = m * 40 * 6 * c * cols >= kParallelMinMacs;  // ~40 rows of ~6 windows
  compute_departure_rows(L, dirty_masks, a, zero_a, m, parallel, pairs.departures);
  // Each part lists the pairs of its own taps, then sums them into its taps' rows of dW.
  run_in_parts(std::min(parts_for(parallel), static_cast<int>(taps)), [&](int part, int count) {
    const int64_t t0 = taps * part / count, t1 = taps * (part + 1) / count;
    for (int64_t t = t0; t < t1; ++t) {
      pairs.in[t].clear();
      pairs.grad[t].clear();
    }
    for_each_departure_window(L, dirty_masks, m, pairs.departures,
                              [&](int64_t n, int64_t oy, int64_t ox, int64_t tap, const float* row)
                                  FASTPONG_INLINE_LAMBDA {
      if (tap < t0 || tap >= t1) return;
      pairs.in[tap].push_back(row);
      pairs.grad[tap].push_back(g + (n * L.pixels() + oy * L.out_side + ox) * cols);
    });
    for (int64_t t = t0; t < t1; ++t) {
      kernels.pair_grad(pairs.in[t].data(), pairs.grad[t].data(),
                        static_cast<int64_t>(pairs.in[t].size()), c, cols, dw + t * c * cols,
                        cols);
    }
  });
}

// bias_grad[j] += sum_p g[p, j]
FASTPONG_SIMD_CLONES
void add_column_sums(const float* g, int64_t rows, int64_t cols, float* bias_grad) {
  for (int64_t p = 0; p < rows; ++p) {
    for (int64_t j = 0; j < cols; ++j) bias_grad[j] += g[p * cols + j];
  }
}

// Pixels per block of the weight gradient: the block's gradient rows and patches stay in cache
// while every tile of kernel rows passes over them.
constexpr int64_t kPixelBlock = 256;

// dw += patches^T g for all m * pixels pixels of one layer, threads splitting the kernel rows.
void weight_grad(const GemmLayer& L, const float* in, const float* g, int64_t m, float* dw) {
  const KernelSet& kernels = *g_kernels.load(std::memory_order_relaxed);
  const int64_t total = m * L.pixels();
  std::vector<int64_t> pixel_in(static_cast<size_t>(total));
  for (int64_t p = 0; p < total; ++p) pixel_in[p] = L.in_offset(p);
  // Each kernel row's sum runs over the pixels in order inside whatever tile holds it, so the
  // rows can be split anywhere; parts get whole groups of 8.
  const int64_t groups = (L.rows + 7) / 8;
  const int parts = parts_for(total * L.rows * L.cols >= kParallelMinMacs);
  run_in_parts(static_cast<int>(std::min<int64_t>(parts, groups)), [&](int part, int count) {
    const int64_t r0 = groups * part / count * 8;
    const int64_t r1 = std::min(L.rows, groups * (part + 1) / count * 8);
    for (int64_t p0 = 0; p0 < total; p0 += kPixelBlock) {
      const int64_t pixels = std::min(kPixelBlock, total - p0);
      kernels.weight_grad(L, in, pixel_in.data() + p0, g + p0 * L.cols, pixels, r0, r1, dw);
    }
  });
}

// din (zeroed here; shaped like L's input buffer for m images) = the input gradient of layer L
// from its output gradient g (m * L.pixels() rows of L.cols), summed over the listed output pixels
// only (increasing, as gemm_input_grad takes them): the other pixels add nothing.
void input_grad_at(const GemmLayer& L, const float* g, const std::vector<float>& wt, int64_t m,
                   const std::vector<int64_t>& pixels, std::vector<float>& din) {
  const KernelSet& kernels = *g_kernels.load(std::memory_order_relaxed);
  din.assign(static_cast<size_t>(m * L.in.image()), 0.0f);
  const int64_t count = static_cast<int64_t>(pixels.size());
  const int parts = parts_for(m > 1 && count * L.rows * L.cols >= kParallelMinMacs);
  run_in_parts(static_cast<int>(std::min<int64_t>(parts, m)), [&](int part, int parts_now) {
    // Parts take whole images: two parts never add into the same input element.
    const auto first_of = [&](int64_t image) {
      return std::lower_bound(pixels.begin(), pixels.end(), image * L.pixels()) - pixels.begin();
    };
    const int64_t i0 = first_of(m * part / parts_now), i1 = first_of(m * (part + 1) / parts_now);
    kernels.input_grad(L, g, wt.data(), pixels.data() + i0, i1 - i0, din.data());
  });
}

// The same over every output pixel.
void input_grad(const GemmLayer& L, const float* g, const std::vector<float>& wt, int64_t m,
                std::vector<float>& din) {
  thread_local std::vector<int64_t> every;
  every.resize(static_cast<size_t>(m * L.pixels()));
  std::iota(every.begin(), every.end(), int64_t{0});
  input_grad_at(L, g, wt, m, every, din);
}

const std::vector<std::string>& names() {
  static const std::vector<std::string> n = [] {
    std::vector<std::string> v;
    for (int l = 0; l < ConvPolicy::kConvLayers; ++l) {
      v.push_back("conv2d_" + std::to_string(l) + "/kernel");
      v.push_back("conv2d_" + std::to_string(l) + "/bias");
    }
    for (const char* layer : {"dense_0", "logits"}) {
      v.push_back(std::string(layer) + "/kernel");
      v.push_back(std::string(layer) + "/bias");
    }
    return v;
  }();
  return n;
}

const std::vector<std::vector<int64_t>>& shapes() {
  static const std::vector<std::vector<int64_t>> s = [] {
    std::vector<std::vector<int64_t>> v;
    int64_t channels = 1;
    for (const ConvSpec& c : kConvSpecs) {
      v.push_back({c.kernel, c.kernel, channels, c.filters});
      v.push_back({c.filters});
      channels = c.filters;
    }
    const int64_t flat = network().flat;
    v.push_back({flat, ConvPolicy::kHidden});
    v.push_back({ConvPolicy::kHidden});
    v.push_back({ConvPolicy::kHidden, ConvPolicy::kActions});
    v.push_back({ConvPolicy::kActions});
    return v;
  }();
  return s;
}

}  // namespace

const std::string& ConvPolicy::tensor_name(int i) { return names()[i]; }
const std::vector<int64_t>& ConvPolicy::tensor_shape(int i) { return shapes()[i]; }
int64_t ConvPolicy::tensor_size(int i) {
  int64_t n = 1;
  for (int64_t d : shapes()[i]) n *= d;
  return n;
}

ConvPolicy::ConvPolicy() : head_({network().flat, kHidden, kActions}) {
  // The conv tensors back to back in one buffer (background() compares them in one piece); the
  // dense head's live in the DensePolicy.
  int64_t total = 0;
  for (int i = 0; i < 2 * kConvLayers; ++i) total += tensor_size(i);
  conv_parameters_.assign(static_cast<size_t>(total), 0.0f);
  float* next = conv_parameters_.data();
  for (int i = 0; i < 2 * kConvLayers; ++i) {
    tensors_[i] = next;
    next += tensor_size(i);
  }
  for (int64_t l = 0; l < head_.num_layers(); ++l) {
    tensors_[2 * (kConvLayers + l)] = head_.kernel(l);
    tensors_[2 * (kConvLayers + l) + 1] = head_.bias(l);
  }
}

struct ConvPolicy::Background {
  std::vector<float> conv_parameters;
  Activations acts;
};

std::shared_ptr<const ConvPolicy::Background> ConvPolicy::background() const {
  const float* first = conv_parameters_.data();
  const float* last = first + conv_parameters_.size();
  const size_t bytes = static_cast<size_t>(last - first) * sizeof(float);
  std::lock_guard<std::mutex> lock(background_mutex_);
  // A bitwise comparison (~270 KB, microseconds) rather than a version number: the parameters
  // are written in place from Python through NumPy views.
  if (background_ == nullptr ||
      std::memcmp(background_->conv_parameters.data(), first, bytes) != 0) {
    auto fresh = std::make_shared<Background>();
    fresh->conv_parameters.assign(first, last);
    zero_frame_activations(*this, fresh->acts);
    background_ = std::move(fresh);
  }
  return background_;
}

void ConvPolicy::forward(const float* x, int64_t n, float* log_probs, float* probs) const {
  if (n == 0) return;
  // Reused across calls: the training loop calls this once per step with a few frames.
  thread_local Activations acts;
  acts.reserve(n);
  // A single frame is computed in full (no background), which keeps that path exercised; its
  // result agrees with a batch's to float32 rounding.
  std::shared_ptr<const Background> zero;
  if (n >= kBackgroundMinFrames && g_skip_zero_frame.load()) zero = background();
  forward_batch(*this, x, n, acts, zero ? &zero->acts : nullptr, /*for_backward=*/false);
  head_.forward(acts.a[kConvLayers - 1].data(), n, log_probs, probs);
}

namespace {

// Each layer's activations from frame `first` on, in a batch's Activations: what a backward pass
// over a stretch of the batch reads.
using LayerPointers = std::array<const float*, ConvPolicy::kConvLayers>;
LayerPointers layer_pointers(const Activations& acts, int64_t first) {
  const Network& net = network();
  LayerPointers a;
  for (int l = 0; l < ConvPolicy::kConvLayers; ++l) {
    a[l] = acts.a[l].data() + first * net.buffers[l].image();
  }
  return a;
}

// The conv layers' backward pass, fed chunk by chunk with the chunk's activations and the
// gradient at the flattened conv output; `finish` adds the parts summed over every step (the zero
// frame's share of conv2d_1's weights and of conv2d_0's bias). Only the conv tensors' gradients
// (grads[0 .. 2 * kConvLayers)) are touched.
class ConvBackward {
 public:
  ConvBackward(const ConvPolicy& policy, const Activations& background)
      : policy_(policy), net_(network()), background_(background), scratch_(scratch()),
        wt_(scratch_.wt), g_sums_(scratch_.g_sums), ungated_sum_(scratch_.ungated_sum),
        din_(scratch_.din), g_(scratch_.g), g_next_(scratch_.g_next), ungated_(scratch_.ungated),
        dirty_(scratch_.dirty), dirty_above_(scratch_.dirty_above),
        departure_pairs_(scratch_.departure_pairs) {
    for (int l = 0; l < 2; ++l) {
      const GemmLayer& L = net_.layers[l];
      g_sums_[l].assign(static_cast<size_t>(L.pixels() * L.cols), 0.0f);
    }
    ungated_sum_.assign(static_cast<size_t>(kConvSpecs[0].filters), 0.0f);
    // Kernels transposed (cols, rows), for the input gradients of the GEMM layers.
    wt_.resize(net_.layers.size());
    for (size_t l = 0; l < net_.layers.size(); ++l) {
      const GemmLayer& L = net_.layers[l];
      wt_[l] = transposed(policy.tensor(2 * static_cast<int>(l) + 2), L.rows, L.cols);
    }
    taps_transposed(net_.layers[0], policy.tensor(2), scratch_.first_taps);
  }

  // The buffers of a backward pass, kept from call to call in each calling thread: a batch's
  // gradients are tens of megabytes, and fresh pages for them each call cost ~10% of its time
  // in page faults.
  struct Scratch {
    std::vector<std::vector<float>> wt;
    std::vector<float> first_taps;  // conv2d_1's kernel tap by tap (taps_transposed)
    std::array<std::vector<float>, 2> g_sums;
    std::vector<float> ungated_sum, din, g, g_next, ungated;
    std::vector<uint8_t> dirty, dirty_above;
    DeparturePairs departure_pairs;
    // conv2d_2's input gradient from its changed outputs only (chunk, add_second_layer_sums).
    std::vector<uint8_t> dirty_third;
    std::vector<int64_t> changed_third;
    std::vector<float> third_grad_sum, summed_din, changed_sum;
  };
  static Scratch& scratch() {
    thread_local Scratch s;
    return s;
  }

  // m steps xm whose activations are acts, flat_grad (m, flat) the gradient at the flattened
  // conv output (before its ReLU gate).
  void chunk(const float* xm, int64_t m, const Activations& acts, const float* flat_grad,
             float* const* grads) {
    chunk(xm, m, layer_pointers(acts, 0), flat_grad, grads);
  }
  // The same with the activations as each layer's first frame (layer_pointers).
  void chunk(const float* xm, int64_t m, const LayerPointers& a, const float* flat_grad,
             float* const* grads) {
    const Network& net = net_;
    const GemmLayer& second = net.layers[0];  // conv2d_1
    const int64_t first_pixels = net.first_out_side * net.first_out_side;
    const int64_t first_channels = kConvSpecs[0].filters;
    dirty_.resize(static_cast<size_t>(m * first_pixels));
    parallel_for(m, m >= kParallelMinSteps, [&](int64_t t) {
      first_layer_dirty(xm + t * ConvPolicy::kInputSize, dirty_.data() + t * first_pixels);
    });
    // The conv layers from the top (conv2d_3) down to conv2d_2: g is the gradient at the layer's
    // output (ReLU gate applied), compact (pixels, cols).
    const float* flat = a[ConvPolicy::kConvLayers - 1];
    g_.resize(static_cast<size_t>(m * net.flat));
    gate_gradient(net.layers.back(), m, flat_grad, flat, g_.data());
    for (int l = static_cast<int>(net.layers.size()) - 1; l >= 1; --l) {
      const GemmLayer& L = net.layers[l];
      const float* in = a[l];
      add_column_sums(g_.data(), m * L.pixels(), L.cols, grads[2 * l + 3]);
      if (l == 1) {
        // conv2d_2: its input departs from the zero frame's where conv2d_1's windows see a
        // nonzero pixel (the rest of its weight gradient in finish).
        const GemmLayer& below = net.layers[0];
        dirty_above_.resize(static_cast<size_t>(m * below.pixels()));
        parallel_for(m, m >= kParallelMinSteps, [&](int64_t t) {
          window_dirty(below, dirty_.data() + t * first_pixels,
                       dirty_above_.data() + t * below.pixels());
        });
        departure_weight_grad(L, dirty_above_.data(), in, background_.a[l].data(), g_.data(), m,
                              departure_pairs_, grads[2 * l + 2]);
        third_input_grad(m);
      } else {
        weight_grad(L, in, g_.data(), m, grads[2 * l + 2]);
        input_grad(L, g_.data(), wt_[l], m, din_);
      }
      // The gradient at conv2d_l's output (conv2d_l is GEMM layer l - 1), gated by its ReLU.
      g_next_.resize(static_cast<size_t>(m * net.layers[l - 1].pixels() * net.layers[l - 1].cols));
      gate_gradient(net.layers[l - 1], m, din_.data(), in, g_next_.data());
      std::swap(g_, g_next_);
    }
    // conv2d_1: its weights from the sparse departures of a1 from the zero frame's (the rest in
    // finish); its input gradient only where conv2d_0's weights need it.
    departure_weight_grad(second, dirty_.data(), a[0], background_.a[0].data(),
                          g_.data(), m, departure_pairs_, grads[2]);
    add_second_layer_sums(m, grads[3]);
    g_next_.resize(static_cast<size_t>(m * first_pixels * first_channels));
    ungated_.resize(static_cast<size_t>(m * first_channels));
    first_layer_output_grad(second, dirty_.data(), a[0], g_.data(),
                            scratch_.first_taps.data(), m, g_next_.data(), ungated_.data());
    add_column_sums(ungated_.data(), m, first_channels, ungated_sum_.data());
    first_layer_weight_grad(xm, m, g_next_.data(), grads[0]);
    // The bias gradient sums the gated gradient over every position: over the computed ones
    // directly, and over the others, whose pre-activation is the bias itself (their window
    // sees no input), as (all positions - computed ones) of the ungated gradient where b > 0.
    add_first_layer_bias_grad(dirty_.data(), m, g_next_.data(), grads[1]);
  }

  // The sums over steps that finish() needs (see g_sums_, ungated_sum_): kept apart per chunk
  // when chunks run on threads of their own, then added up in chunk order.
  struct Sums {
    std::array<std::vector<float>, 2> g;
    std::vector<float> ungated;
  };
  // Moves the sums so far into `out` and starts again from zero.
  void take_sums(Sums& out) {
    for (int l = 0; l < 2; ++l) {
      out.g[l].assign(g_sums_[l].begin(), g_sums_[l].end());
      std::fill(g_sums_[l].begin(), g_sums_[l].end(), 0.0f);
    }
    out.ungated.assign(ungated_sum_.begin(), ungated_sum_.end());
    std::fill(ungated_sum_.begin(), ungated_sum_.end(), 0.0f);
  }
  void add_sums(const Sums& in) {
    for (int l = 0; l < 2; ++l) {
      for (size_t i = 0; i < g_sums_[l].size(); ++i) g_sums_[l][i] += in.g[l][i];
    }
    for (size_t j = 0; j < ungated_sum_.size(); ++j) ungated_sum_[j] += in.ungated[j];
  }

  void finish(float* const* grads) {
    const Network& net = net_;
    const GemmLayer& second = net.layers[0];
    const int64_t first_channels = kConvSpecs[0].filters;
    // conv2d_1's weight gradient, the zero frame's part: its patches are the same at every step.
    weight_grad(second, background_.a[0].data(), g_sums_[0].data(), 1, grads[2]);
    // conv2d_2's likewise.
    weight_grad(net.layers[1], background_.a[1].data(), g_sums_[1].data(), 1, grads[4]);
    // sum over every position and step of conv2d_1's input gradient = the input gradient of the
    // per-pixel sums of its output gradient, summed over the positions.
    input_grad(second, g_sums_[0].data(), wt_[0], 1, din_);
    const float* b0 = policy_.tensor(1);
    for (int64_t j = 0; j < first_channels; ++j) {
      if (!(b0[j] > 0.0f)) continue;
      float all = 0.0f;
      for (int64_t iy = 0; iy < net.first_out_side; ++iy) {
        for (int64_t ix = 0; ix < net.first_out_side; ++ix) {
          const int64_t at = (iy + second.in.pad) * second.in.side + ix + second.in.pad;
          all += din_[at * first_channels + j];
        }
      }
      grads[1][j] += all - ungated_sum_[j];
    }
  }

 private:
  // conv2d_2's input gradient (into din_) from g_, its gradient at the output, for m steps: only
  // from the outputs whose window holds a changed conv2d_1 output (dirty_above_), about half of
  // them. What reads conv2d_1's gradient one step and position at a time (its weights' departure
  // part, conv2d_0's output gradient) reads it only at its changed outputs, and each of those is
  // in the window of changed conv2d_2 outputs alone, so there the gradient is whole. Elsewhere
  // only its sums over steps are needed (add_second_layer_sums), and those come from the input
  // gradient of g_ summed over the steps (summed_din), taken once. Also adds g_'s per-pixel sums
  // to g_sums_[1].
  void third_input_grad(int64_t m) {
    const GemmLayer& L = net_.layers[1];  // conv2d_2
    const GemmLayer& below = net_.layers[0];
    std::vector<uint8_t>& dirty = scratch_.dirty_third;
    std::vector<int64_t>& changed = scratch_.changed_third;
    dirty.resize(static_cast<size_t>(m * L.pixels()));
    changed.clear();
    for (int64_t t = 0; t < m; ++t) {
      window_dirty(L, dirty_above_.data() + t * below.pixels(), dirty.data() + t * L.pixels());
    }
    for (int64_t q = 0; q < m * L.pixels(); ++q) {
      if (dirty[q]) changed.push_back(q);
    }
    input_grad_at(L, g_.data(), wt_[1], m, changed, din_);
    std::vector<float>& summed = scratch_.third_grad_sum;
    summed.assign(static_cast<size_t>(L.pixels() * L.cols), 0.0f);
    add_column_sums(g_.data(), m, L.pixels() * L.cols, summed.data());
    for (size_t i = 0; i < summed.size(); ++i) g_sums_[1][i] += summed[i];
    input_grad(L, summed.data(), wt_[1], 1, scratch_.summed_din);
  }

  // conv2d_1's gradient g_ (ReLU gate applied) summed over the chunk's m steps, into g_sums_[0]
  // per position and into its bias gradient: directly where the output changed, and elsewhere,
  // where the output and its gate are the zero frame's, as the gate times the input gradient of
  // conv2d_2's summed gradient less the changed steps' input gradient (din_) at that position.
  void add_second_layer_sums(int64_t m, float* bias_grad) {
    const GemmLayer& second = net_.layers[0];
    const int64_t pixels = second.pixels(), c = second.cols, image = second.out.image();
    std::vector<float>& changed = scratch_.changed_sum;
    changed.assign(static_cast<size_t>(2 * pixels * c), 0.0f);
    float* g_changed = changed.data();                // sum of g_ over the changed steps
    float* din_changed = changed.data() + pixels * c;  // sum of din_ over them
    for (int64_t t = 0; t < m; ++t) {
      for (int64_t p = 0; p < pixels; ++p) {
        if (!dirty_above_[t * pixels + p]) continue;
        const float* g = g_.data() + (t * pixels + p) * c;
        const float* d = din_.data() + t * image + second.out_at[p];
        for (int64_t j = 0; j < c; ++j) {
          g_changed[p * c + j] += g[j];
          din_changed[p * c + j] += d[j];
        }
      }
    }
    const float* zero_a = background_.a[1].data();
    const float* summed_din = scratch_.summed_din.data();
    for (int64_t p = 0; p < pixels; ++p) {
      const int64_t at = second.out_at[p];
      for (int64_t j = 0; j < c; ++j) {
        const float unchanged =
            zero_a[at + j] > 0.0f ? summed_din[at + j] - din_changed[p * c + j] : 0.0f;
        const float sum = g_changed[p * c + j] + unchanged;
        g_sums_[0][p * c + j] += sum;
        bias_grad[j] += sum;
      }
    }
  }

  const ConvPolicy& policy_;
  const Network& net_;
  const Activations& background_;
  Scratch& scratch_;
  std::vector<std::vector<float>>& wt_;
  // Sums over all steps: the output gradients of conv2d_1 and conv2d_2 per pixel (g_sums_[0]
  // and [1]: the zero frame's share of their weight gradients, and conv2d_0's bias), and the
  // ungated input gradient of conv2d_1 over the positions computed one by one.
  std::array<std::vector<float>, 2>& g_sums_;
  std::vector<float>& ungated_sum_;
  std::vector<float>& din_;
  std::vector<float>& g_;
  std::vector<float>& g_next_;
  std::vector<float>& ungated_;
  std::vector<uint8_t>& dirty_;  // per step, conv2d_0's outputs whose window holds a nonzero pixel
  std::vector<uint8_t>& dirty_above_;  // per step, conv2d_1's outputs that see a nonzero pixel
  DeparturePairs& departure_pairs_;
};

// One chunk's share of a gradient: every tensor's, back to back, and the sums ConvBackward::finish
// needs.
struct ChunkShare {
  std::vector<float> tensors;
  ConvBackward::Sums sums;
};

// The backward pass over `steps` steps into grads[0 .. tensors), as add_chunk(t0, m, into,
// backward) passes steps [t0, t0 + m) into the tensors `into` (and into `backward`'s sums).
// Steps that fit one chunk (ConvPolicy::kStepChunk) go in one call, its layers sharing the
// threads. More go to threads a chunk at a time, each chunk whole: sharing each layer's work
// instead left a thread idle through every serial stretch between layers, about a fifth of the
// time on two cores. Each chunk has a share of its own, and the shares are added up in chunk
// order, so the result does not depend on the thread count (the same path runs on one thread).
template <typename AddChunk>
void accumulate_by_chunks(const ConvPolicy& policy, const Activations& background, int64_t steps,
                          int tensors, const std::array<float*, ConvPolicy::kTensors>& grads,
                          const AddChunk& add_chunk) {
  const int64_t chunks = (steps + ConvPolicy::kStepChunk - 1) / ConvPolicy::kStepChunk;
  if (chunks <= 1) {
    ConvBackward backward(policy, background);
    if (steps > 0) add_chunk(0, steps, grads, backward);
    backward.finish(grads.data());
    return;
  }
  int64_t total = 0;
  std::array<int64_t, ConvPolicy::kTensors> offset{};
  for (int i = 0; i < tensors; ++i) {
    offset[i] = total;
    total += ConvPolicy::tensor_size(i);
  }
  thread_local std::vector<ChunkShare> shares;  // ~0.7 MB a chunk, kept from call to call
  shares.resize(static_cast<size_t>(chunks));
  std::vector<ChunkShare>& chunk_shares = shares;  // the calling thread's, seen from every part
  const int parts = static_cast<int>(std::min<int64_t>(parts_for(true), chunks));
  // One ConvBackward per thread, built there (its buffers are that thread's) on its first chunk.
  std::vector<std::unique_ptr<ConvBackward>> workers(static_cast<size_t>(parts));
  for_each_item(chunks, parts, [&](int64_t c, int part) {
    if (workers[part] == nullptr) {
      workers[part] = std::make_unique<ConvBackward>(policy, background);
    }
    ChunkShare& share = chunk_shares[c];
    share.tensors.assign(static_cast<size_t>(total), 0.0f);
    std::array<float*, ConvPolicy::kTensors> into{};
    for (int i = 0; i < tensors; ++i) into[i] = share.tensors.data() + offset[i];
    const int64_t t0 = c * ConvPolicy::kStepChunk;
    add_chunk(t0, std::min(ConvPolicy::kStepChunk, steps - t0), into, *workers[part]);
    workers[part]->take_sums(share.sums);
  });
  workers.clear();
  ConvBackward backward(policy, background);
  for (const ChunkShare& share : chunk_shares) backward.add_sums(share.sums);
  for_each_item(tensors, parts, [&](int64_t i, int) {
    float* g = grads[i];
    const int64_t size = ConvPolicy::tensor_size(static_cast<int>(i));
    for (const ChunkShare& share : chunk_shares) {
      const float* part = share.tensors.data() + offset[i];
      for (int64_t j = 0; j < size; ++j) g[j] += part[j];
    }
  });
  backward.finish(grads.data());
}

}  // namespace

void ConvPolicy::accumulate_gradient(const float* x, const int64_t* actions,
                                     const float* advantages, int64_t steps, float scale,
                                     const std::array<float*, kTensors>& grads,
                                     float entropy_coef) const {
  const Network& net = network();
  const std::shared_ptr<const Background> zero = background();
  // m steps from t0 through the network and back, adding into `into` (and into `backward`'s sums).
  const auto add_chunk = [&](int64_t t0, int64_t m, const std::array<float*, kTensors>& into,
                             ConvBackward& backward) {
    DenseTensors head_grads;
    for (int64_t l = 0; l < head_.num_layers(); ++l) {
      head_grads.kernels.push_back(into[2 * (kConvLayers + l)]);
      head_grads.biases.push_back(into[2 * (kConvLayers + l) + 1]);
    }
    thread_local std::vector<float> flat_grad;
    thread_local Activations acts;  // kept from call to call, as ConvBackward's buffers
    acts.reserve(m);
    const float* xm = x + t0 * kInputSize;
    forward_batch(*this, xm, m, acts, g_skip_zero_frame.load() ? &zero->acts : nullptr,
                  /*for_backward=*/true);
    // The dense head (DensePolicy) on the flattened conv output: its gradients, and d J / d flat.
    flat_grad.resize(static_cast<size_t>(m * net.flat));
    head_.accumulate_gradient(acts.a[kConvLayers - 1].data(), actions + t0, advantages + t0, m,
                              scale, head_grads, flat_grad.data(), entropy_coef);
    backward.chunk(xm, m, acts, flat_grad.data(), into.data());
  };
  accumulate_by_chunks(*this, zero->acts, steps, kTensors, grads, add_chunk);
}

int64_t ConvPolicy::feature_size() { return network().flat; }

struct ConvPolicy::Kept {
  std::vector<float> x;                       // the frames
  std::shared_ptr<const Background> weights;  // the conv weights' background they were run with
  Activations acts;
};

void ConvPolicy::features(const float* x, int64_t n, float* flat, bool keep) const {
  if (n == 0) return;
  thread_local Activations scratch;
  Activations* acts = &scratch;
  std::shared_ptr<const Background> zero;
  if ((n >= kBackgroundMinFrames || keep) && g_skip_zero_frame.load()) zero = background();
  if (keep) {
    if (kept_ == nullptr) kept_ = std::make_shared<Kept>();
    kept_->x.assign(x, x + n * kInputSize);
    kept_->weights = zero ? zero : background();
    acts = &kept_->acts;
  }
  acts->reserve(n);
  forward_batch(*this, x, n, *acts, zero ? &zero->acts : nullptr, /*for_backward=*/keep);
  const float* out = acts->a[kConvLayers - 1].data();
  std::copy(out, out + n * network().flat, flat);
}

void ConvPolicy::accumulate_feature_gradient(const float* x, const float* flat_grad,
                                             int64_t steps,
                                             const std::array<float*, kTensors>& grads) const {
  const Network& net = network();
  const std::shared_ptr<const Background> zero = background();
  // The kept activations serve when they are of these frames under these weights: background()
  // hands out the same object exactly while the conv weights are unchanged.
  const bool kept = kept_ != nullptr && kept_->weights == zero &&
                    static_cast<int64_t>(kept_->x.size()) == steps * kInputSize &&
                    std::memcmp(kept_->x.data(), x, kept_->x.size() * sizeof(float)) == 0;
  const auto add_chunk = [&](int64_t t0, int64_t m, const std::array<float*, kTensors>& into,
                             ConvBackward& backward) {
    const float* xm = x + t0 * kInputSize;
    const float* gm = flat_grad + t0 * net.flat;
    if (kept) {
      backward.chunk(xm, m, layer_pointers(kept_->acts, t0), gm, into.data());
      return;
    }
    thread_local Activations acts;  // kept from call to call, as ConvBackward's buffers
    acts.reserve(m);
    forward_batch(*this, xm, m, acts, g_skip_zero_frame.load() ? &zero->acts : nullptr,
                  /*for_backward=*/true);
    backward.chunk(xm, m, acts, gm, into.data());
  };
  accumulate_by_chunks(*this, zero->acts, steps, 2 * kConvLayers, grads, add_chunk);
}

std::vector<std::string> conv_kernels() {
  std::vector<std::string> v;
  for (const KernelSet& k : kKernelSets) {
    if (k.supported()) v.emplace_back(k.name);
  }
  return v;
}

std::string conv_kernel() { return g_kernels.load()->name; }

void set_zero_frame_skipping(bool on) { g_skip_zero_frame.store(on); }
bool zero_frame_skipping() { return g_skip_zero_frame.load(); }

bool use_conv_kernel(const std::string& name) {
  for (const KernelSet& k : kKernelSets) {
    if (name == k.name && k.supported()) {
      g_kernels.store(&k);
      return true;
    }
  }
  return false;
}

}  // namespace fastpong
