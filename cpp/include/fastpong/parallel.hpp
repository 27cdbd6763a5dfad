// Thread control and the portable SIMD dispatch used by every kernel.
#pragma once

namespace fastpong {

// Number of threads the batched kernels use (1 when built without OpenMP).
int num_threads();
// Sets it for all later kernel calls; n >= 1.
void set_num_threads(int n);
// True when the library was compiled with OpenMP.
bool has_openmp();

}  // namespace fastpong

// Hot loops are compiled twice, for the x86-64 baseline and for x86-64-v3 (AVX2 + FMA), and the
// loader picks the best one for the CPU at run time. Users get AVX2 without -march=native.
#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(FASTPONG_NO_CLONES)
#define FASTPONG_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define FASTPONG_SIMD_CLONES
#endif

// Spawning threads costs a few microseconds: below this much work a kernel stays serial.
#define FASTPONG_PARALLEL_MIN_WORK 200000
