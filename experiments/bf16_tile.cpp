// Does bfloat16 pay for the CNN's GEMM tiles on this CPU? One layer's forward product, timed three
// ways on one core: float32 FMAs (the shape of fastpong's AVX-512 forward tile, cpp/conv.cpp),
// AVX-512 BF16 dot products (VDPBF16PS: pairs of bf16 products summed into float32) on inputs
// already in bf16, and the conversion of the float32 inputs to bf16 that a bf16 path would add.
//
//   g++ -O2 -march=native experiments/bf16_tile.cpp -o /tmp/bf16_tile && /tmp/bf16_tile
//
// The shape is conv2d_2's in a PPO minibatch: 256 steps x 25 output pixels, each a patch of
// 3 x 3 x 48 = 432 inputs, times a 432 x 64 kernel. Both tiles hold 6 pixels x 4 vectors of 16
// output channels in registers. The bf16 kernel is packed [rows / 2][64][2] (two consecutive
// kernel rows side by side, as VDPBF16PS reads them); consecutive rows are consecutive input
// channels of one tap, so the input pairs are adjacent in memory too. Prints the best of 30 rounds
// and the largest error of the bf16 result against the float32 one.
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

namespace {

constexpr int kRows = 432, kCols = 64, kPixels = 256 * 25, kTile = 6, kVectors = kCols / 16;

double seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

__attribute__((target("avx512f"))) void product_f32(const float* in, const float* w, float* out) {
  for (int p0 = 0; p0 + kTile <= kPixels; p0 += kTile) {
    __m512 acc[kTile][kVectors];
    for (auto& row : acc)
      for (auto& a : row) a = _mm512_setzero_ps();
    for (int r = 0; r < kRows; ++r) {
      __m512 wr[kVectors];
      for (int v = 0; v < kVectors; ++v) wr[v] = _mm512_loadu_ps(w + r * kCols + 16 * v);
      for (int j = 0; j < kTile; ++j) {
        const __m512 a = _mm512_set1_ps(in[(p0 + j) * kRows + r]);
        for (int v = 0; v < kVectors; ++v) acc[j][v] = _mm512_fmadd_ps(a, wr[v], acc[j][v]);
      }
    }
    for (int j = 0; j < kTile; ++j) {
      for (int v = 0; v < kVectors; ++v) {
        _mm512_storeu_ps(out + (p0 + j) * kCols + 16 * v, acc[j][v]);
      }
    }
  }
}

__attribute__((target("avx512f,avx512bf16"))) void product_bf16(const uint16_t* in,
                                                              const uint16_t* w_pairs,
                                                              float* out) {
  for (int p0 = 0; p0 + kTile <= kPixels; p0 += kTile) {
    __m512 acc[kTile][kVectors];
    for (auto& row : acc)
      for (auto& a : row) a = _mm512_setzero_ps();
    for (int r = 0; r < kRows / 2; ++r) {
      __m512bh wr[kVectors];
      for (int v = 0; v < kVectors; ++v) {
        wr[v] = (__m512bh)_mm512_loadu_si512(w_pairs + (r * kCols + 16 * v) * 2);
      }
      for (int j = 0; j < kTile; ++j) {
        uint32_t pair;
        std::memcpy(&pair, in + (p0 + j) * kRows + 2 * r, sizeof pair);
        const __m512bh a = (__m512bh)_mm512_set1_epi32(static_cast<int>(pair));
        for (int v = 0; v < kVectors; ++v) acc[j][v] = _mm512_dpbf16_ps(acc[j][v], a, wr[v]);
      }
    }
    for (int j = 0; j < kTile; ++j) {
      for (int v = 0; v < kVectors; ++v) {
        _mm512_storeu_ps(out + (p0 + j) * kCols + 16 * v, acc[j][v]);
      }
    }
  }
}

// float32 -> bf16, rounded to nearest even, 32 values a step.
__attribute__((target("avx512f,avx512bf16"))) void to_bf16(const float* in, int64_t n,
                                                         uint16_t* out) {
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512bh b = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(in + i + 16), _mm512_loadu_ps(in + i));
    _mm512_storeu_si512(out + i, (__m512i)b);
  }
  for (; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, &in[i], sizeof u);
    out[i] = static_cast<uint16_t>((u + 0x7fff + ((u >> 16) & 1)) >> 16);
  }
}

}  // namespace

int main() {
  if (!__builtin_cpu_supports("avx512bf16")) {
    std::puts("this CPU has no AVX-512 BF16: nothing to measure");
    return 0;
  }
  std::mt19937 gen(0);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> in(static_cast<size_t>(kPixels) * kRows), w(kRows * kCols);
  for (float& x : in) x = std::max(0.0f, normal(gen));  // post-ReLU activations
  for (float& x : w) x = 0.05f * normal(gen);
  std::vector<uint16_t> in_bf16(in.size()), w_bf16(w.size()), w_pairs(w.size());
  to_bf16(w.data(), static_cast<int64_t>(w.size()), w_bf16.data());
  for (int r = 0; r < kRows; ++r) {
    for (int c = 0; c < kCols; ++c) {
      w_pairs[((r / 2) * kCols + c) * 2 + (r & 1)] = w_bf16[r * kCols + c];
    }
  }
  std::vector<float> out_f32(static_cast<size_t>(kPixels) * kCols), out_bf16(out_f32.size());

  double best_f32 = 1e30, best_bf16 = 1e30, best_convert = 1e30;
  for (int round = 0; round < 30; ++round) {
    const double t0 = seconds();
    product_f32(in.data(), w.data(), out_f32.data());
    const double t1 = seconds();
    to_bf16(in.data(), static_cast<int64_t>(in.size()), in_bf16.data());
    const double t2 = seconds();
    product_bf16(in_bf16.data(), w_pairs.data(), out_bf16.data());
    const double t3 = seconds();
    best_f32 = std::min(best_f32, t1 - t0);
    best_convert = std::min(best_convert, t2 - t1);
    best_bf16 = std::min(best_bf16, t3 - t2);
  }
  double max_error = 0.0, max_value = 0.0;
  for (size_t i = 0; i < out_f32.size(); ++i) {
    max_error = std::max(max_error, static_cast<double>(std::fabs(out_f32[i] - out_bf16[i])));
    max_value = std::max(max_value, static_cast<double>(std::fabs(out_f32[i])));
  }
  const double macs = static_cast<double>(kPixels) * kRows * kCols;
  std::printf("float32 FMA tile      %7.3f ms  %5.1f G multiply-adds/s\n", best_f32 * 1e3,
              macs / best_f32 / 1e9);
  std::printf("bf16 VDPBF16PS tile   %7.3f ms  %5.1f G multiply-adds/s  (%.2fx float32)\n",
              best_bf16 * 1e3, macs / best_bf16 / 1e9, best_f32 / best_bf16);
  std::printf("inputs to bf16        %7.3f ms  (with it: %.2fx float32)\n", best_convert * 1e3,
              best_f32 / (best_bf16 + best_convert));
  std::printf("largest error of the bf16 result: %.3g (largest value %.3g, %.2f%%)\n", max_error,
              max_value, 100.0 * max_error / max_value);
  return 0;
}
