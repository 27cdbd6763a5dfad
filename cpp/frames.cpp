#include "fastpong/frames.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>

#include "fastpong/parallel.hpp"

// Hand-written x86 kernels, compiled for their instruction sets with target attributes and chosen
// at run time, so that the library itself needs nothing beyond the baseline (no -march=native).
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define FASTPONG_X86_KERNELS 1
#include <immintrin.h>
#else
#define FASTPONG_X86_KERNELS 0
#endif

namespace fastpong {
namespace {

// The pixel (r, c) of the 80x80 image is the red channel of frame pixel (35 + 2r, 2c).
inline const uint8_t* image_row_start(const uint8_t* frame, int r) {
  return frame + (kCropTop + 2 * r) * kFrameWidth * kFrameChannels;
}

// Paddles and ball are whatever is neither background shade nor black.
inline uint8_t is_object(uint8_t red) {
  return static_cast<uint8_t>(red != 0 && red != kBackgroundA && red != kBackgroundB);
}

// The portable kernel, and the definition the SIMD kernels must match bit for bit.
template <typename Out>
void binarize_scalar(const uint8_t* frame, Out* image) {
  for (int r = 0; r < kImageSide; ++r) {
    const uint8_t* row = image_row_start(frame, r);
    Out* out = image + r * kImageSide;
    // out[c] = is_object(red of frame pixel 2c)
    for (int c = 0; c < kImageSide; ++c) {
      out[c] = static_cast<Out>(is_object(row[2 * c * kFrameChannels]));
    }
  }
}

// The SIMD kernels cut an image row into groups of 16 pixels. Group g reads the 96 frame bytes
// [96g, 96g + 96) of the row, 16 pairs of RGB pixels, and keeps every 6th byte: the red channel of
// the first pixel of each pair.
constexpr int kGroupPixels = 16;
constexpr int kGroupBytes = kGroupPixels * 2 * kFrameChannels;
static_assert(kImageSide % kGroupPixels == 0, "an image row must be whole groups");

#if FASTPONG_X86_KERNELS

// The SIMD kernels run at the speed of L2 (the rows they read and the image they write do not fit
// in L1 together), and asking for the next image row's bytes ahead of time saves about a tenth.
inline void prefetch_next_row(const uint8_t* row) {
  const uint8_t* next = row + 2 * kFrameWidth * kFrameChannels;
  for (int k = 0; k < kFrameWidth * kFrameChannels; k += 64) __builtin_prefetch(next + k);
}

#define FASTPONG_AVX2 __attribute__((target("avx2")))
#define FASTPONG_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vbmi")))

// AVX2. A byte shuffle moves bytes only within a 16-byte lane, so the group's first 48 bytes go to
// the low lanes and its last 48 to the high lanes, one 16-byte chunk k = 0, 1, 2 at a time. Pixel
// j of a half is byte 6j: in chunk 6j / 16 at 6j % 16. Each chunk's shuffle moves its 3 (or 2)
// red bytes to their pixel's place, j = 0..7, zeroing the rest; OR-ing the three assembles pixels
// 0..7 in bytes 0..7 of the low lane and pixels 8..15 in bytes 0..7 of the high lane.
FASTPONG_AVX2 inline __m256i red_bytes_avx2(const uint8_t* group) {
  alignas(32) static const int8_t kTake[3][32] = {
      {0, 6, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
       0, 6, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1},
      {-1, -1, -1, 2, 8, 14, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
       -1, -1, -1, 2, 8, 14, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1},
      {-1, -1, -1, -1, -1, -1, 4, 10, -1, -1, -1, -1, -1, -1, -1, -1,
       -1, -1, -1, -1, -1, -1, 4, 10, -1, -1, -1, -1, -1, -1, -1, -1},
  };
  const __m128i* chunk = reinterpret_cast<const __m128i*>(group);
  __m256i red = _mm256_setzero_si256();
  for (int k = 0; k < 3; ++k) {
    const __m256i halves = _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_loadu_si128(chunk + k)), _mm_loadu_si128(chunk + 3 + k), 1);
    const __m256i take = _mm256_load_si256(reinterpret_cast<const __m256i*>(kTake[k]));
    red = _mm256_or_si256(red, _mm256_shuffle_epi8(halves, take));
  }
  return red;
}

// Each byte: is_object(red), 1 or 0.
FASTPONG_AVX2 inline __m256i object_bytes_avx2(__m256i red) {
  const __m256i black = _mm256_cmpeq_epi8(red, _mm256_setzero_si256());
  const __m256i shade_a = _mm256_cmpeq_epi8(red, _mm256_set1_epi8(static_cast<char>(kBackgroundA)));
  const __m256i shade_b = _mm256_cmpeq_epi8(red, _mm256_set1_epi8(static_cast<char>(kBackgroundB)));
  // object = !(black || shade_a || shade_b)
  const __m256i background = _mm256_or_si256(_mm256_or_si256(black, shade_a), shade_b);
  return _mm256_andnot_si256(background, _mm256_set1_epi8(1));
}

// Bytes 0..7 of each lane are pixels 0..7 and 8..15; stored widened to float or as bytes.
FASTPONG_AVX2 inline void store_group_avx2(__m256i objects, float* out) {
  const __m128i low = _mm256_castsi256_si128(objects), high = _mm256_extracti128_si256(objects, 1);
  _mm256_storeu_ps(out, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(low)));
  _mm256_storeu_ps(out + 8, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(high)));
}
FASTPONG_AVX2 inline void store_group_avx2(__m256i objects, uint8_t* out) {
  const __m128i low = _mm256_castsi256_si128(objects), high = _mm256_extracti128_si256(objects, 1);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm_unpacklo_epi64(low, high));
}

template <typename Out>
FASTPONG_AVX2 void binarize_avx2(const uint8_t* frame, Out* image) {
  for (int r = 0; r < kImageSide; ++r) {
    const uint8_t* row = image_row_start(frame, r);
    Out* out = image + r * kImageSide;
    prefetch_next_row(row);
    // out[16g + j] = is_object(row[96g + 6j]), j < 16
    for (int g = 0; g < kImageSide / kGroupPixels; ++g) {
      store_group_avx2(object_bytes_avx2(red_bytes_avx2(row + g * kGroupBytes)),
                       out + g * kGroupPixels);
    }
  }
}

// AVX-512 VBMI: one two-register byte permute picks the 16 red bytes out of the group's 96 bytes
// (register a = bytes 0..63, b = bytes 64..95 by a masked load: only the group's bytes are read),
// and the comparisons leave a 16-bit mask that selects 1.0f (or 1) per pixel.
FASTPONG_AVX512 inline __mmask16 object_mask_avx512(const uint8_t* group) {
  alignas(64) static const uint8_t kRedIndex[64] = {0,  6,  12, 18, 24, 30, 36, 42,
                                                    48, 54, 60, 66, 72, 78, 84, 90};
  const __m512i a = _mm512_loadu_si512(group);
  const __m512i b = _mm512_maskz_loadu_epi8(0xffffffffull, group + 64);
  const __m512i red = _mm512_permutex2var_epi8(a, _mm512_load_si512(kRedIndex), b);
  const __m512i shade_a = _mm512_set1_epi8(static_cast<char>(kBackgroundA));
  const __m512i shade_b = _mm512_set1_epi8(static_cast<char>(kBackgroundB));
  // object = red != 0 && red != shade_a && red != shade_b, each comparison masked by the last
  __mmask64 object = _mm512_cmpneq_epi8_mask(red, _mm512_setzero_si512());
  object = _mm512_mask_cmpneq_epi8_mask(object, red, shade_a);
  object = _mm512_mask_cmpneq_epi8_mask(object, red, shade_b);
  return static_cast<__mmask16>(object);  // pixels 0..15; the other 48 bytes are don't-cares
}

FASTPONG_AVX512 inline void store_group_avx512(__mmask16 objects, float* out) {
  _mm512_storeu_ps(out, _mm512_maskz_mov_ps(objects, _mm512_set1_ps(1.0f)));
}
FASTPONG_AVX512 inline void store_group_avx512(__mmask16 objects, uint8_t* out) {
  const __m128i ones = _mm_set1_epi8(1);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm_maskz_mov_epi8(objects, ones));
}

template <typename Out>
FASTPONG_AVX512 void binarize_avx512(const uint8_t* frame, Out* image) {
  for (int r = 0; r < kImageSide; ++r) {
    const uint8_t* row = image_row_start(frame, r);
    Out* out = image + r * kImageSide;
    prefetch_next_row(row);
    // out[16g + j] = is_object(row[96g + 6j]), j < 16
    for (int g = 0; g < kImageSide / kGroupPixels; ++g) {
      store_group_avx512(object_mask_avx512(row + g * kGroupBytes), out + g * kGroupPixels);
    }
  }
}

#endif  // FASTPONG_X86_KERNELS

// The kernels, best first; kernel_supported says which this CPU runs.
enum class Kernel : int { kAvx512, kAvx2, kScalar };
constexpr Kernel kAllKernels[] = {Kernel::kAvx512, Kernel::kAvx2, Kernel::kScalar};

const char* kernel_name(Kernel k) {
  switch (k) {
    case Kernel::kAvx512: return "avx512vbmi";
    case Kernel::kAvx2: return "avx2";
    default: return "scalar";
  }
}

bool kernel_supported(Kernel k) {
#if FASTPONG_X86_KERNELS
  __builtin_cpu_init();  // this may run from a static initializer, before libgcc's own
  // Also checks that the OS saves the wide registers (libgcc and compiler-rt look at XCR0).
  if (k == Kernel::kAvx512) {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vbmi");
  }
  if (k == Kernel::kAvx2) return __builtin_cpu_supports("avx2");
#endif
  return k == Kernel::kScalar;
}

Kernel best_kernel() {
  for (Kernel k : kAllKernels) {
    if (kernel_supported(k)) return k;
  }
  return Kernel::kScalar;
}

// Chosen once at load time; tests switch it with use_preprocess_kernel.
std::atomic<Kernel> g_kernel{best_kernel()};

template <typename Out>
void binarize(const uint8_t* frame, Out* image) {
  switch (g_kernel.load(std::memory_order_relaxed)) {
#if FASTPONG_X86_KERNELS
    case Kernel::kAvx512: return binarize_avx512(frame, image);
    case Kernel::kAvx2: return binarize_avx2(frame, image);
#endif
    default: return binarize_scalar(frame, image);
  }
}

// Appends the nonzero entries of cur - prev (binary images) to `row`. Frame differences are
// almost all zero, so 8 pixels are compared at once and equal words skipped.
void append_difference(const uint8_t* cur, const uint8_t* prev, SparseRows& row) {
  static_assert(kImagePixels % 8 == 0, "image size must be a multiple of 8");
  for (int i = 0; i < kImagePixels; i += 8) {
    uint64_t a, b;
    std::memcpy(&a, cur + i, 8);
    std::memcpy(&b, prev + i, 8);
    if (a == b) continue;
    for (int k = i; k < i + 8; ++k) {
      const int d = static_cast<int>(cur[k]) - static_cast<int>(prev[k]);
      if (d != 0) {
        row.indices.push_back(k);
        row.values.push_back(static_cast<int8_t>(d));
      }
    }
  }
}

}  // namespace

void preprocess_frame(const uint8_t* frame, float* image) { binarize(frame, image); }

void binarize_frame(const uint8_t* frame, uint8_t* image) { binarize(frame, image); }

std::vector<std::string> preprocess_kernels() {
  std::vector<std::string> names;
  for (Kernel k : kAllKernels) {
    if (kernel_supported(k)) names.emplace_back(kernel_name(k));
  }
  return names;
}

std::string preprocess_kernel() { return kernel_name(g_kernel.load()); }

bool use_preprocess_kernel(const std::string& name) {
  for (Kernel k : kAllKernels) {
    if (name == kernel_name(k) && kernel_supported(k)) {
      g_kernel.store(k);
      return true;
    }
  }
  return false;
}

void preprocess_frames(const uint8_t* frames, int64_t n, float* images) {
  const bool parallel = n * kImagePixels >= FASTPONG_PARALLEL_MIN_WORK;
  parallel_for(n, parallel, [&](int64_t i) {
    binarize(frames + i * kFrameBytes, images + i * kImagePixels);
  });
}

FrameDifferencer::FrameDifferencer(int64_t num_envs)
    : num_envs_(num_envs),
      previous_(static_cast<size_t>(num_envs) * kImagePixels, 0),
      has_previous_(static_cast<size_t>(num_envs), 0),
      scratch_(static_cast<size_t>(num_envs)) {}

void FrameDifferencer::reset(int64_t env) { has_previous_[env] = 0; }

void FrameDifferencer::reset_all() { std::fill(has_previous_.begin(), has_previous_.end(), 0); }

void FrameDifferencer::step(const uint8_t* frames, SparseRows& out) {
  const bool parallel = num_envs_ * kImagePixels >= FASTPONG_PARALLEL_MIN_WORK;
  parallel_for(num_envs_, parallel, [&](int64_t e) {
    uint8_t current[kImagePixels];
    binarize(frames + e * kFrameBytes, current);
    uint8_t* previous = previous_.data() + e * kImagePixels;
    SparseRows& row = scratch_[e];
    row.clear();
    if (has_previous_[e]) append_difference(current, previous, row);
    row.offsets.push_back(row.nonzeros());
    std::memcpy(previous, current, kImagePixels);
    has_previous_[e] = 1;
  });
  out.clear();
  for (int64_t e = 0; e < num_envs_; ++e) out.append_row(scratch_[e], 0);
}

void SparseRows::append_row(const SparseRows& other, int64_t r) {
  const int64_t begin = other.offsets[r];
  const int64_t end = other.offsets[r + 1];
  indices.insert(indices.end(), other.indices.begin() + begin, other.indices.begin() + end);
  values.insert(values.end(), other.values.begin() + begin, other.values.begin() + end);
  offsets.push_back(nonzeros());
}

}  // namespace fastpong
