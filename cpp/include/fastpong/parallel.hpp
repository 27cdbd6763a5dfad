// Thread control and the portable SIMD dispatch used by every kernel.
#pragma once
#include <cstdint>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace fastpong {

// Number of threads the batched kernels use (1 when built without OpenMP).
int num_threads();
// Sets it for all later kernel calls; n >= 1.
void set_num_threads(int n);
// True when the library was compiled with OpenMP.
bool has_openmp();

// True inside an active OpenMP parallel region (one that run_in_parts or for_each_item opened,
// say): a kernel called from there already has a thread of its own and runs serially on it.
bool in_parallel_region();

// How many parts run_in_parts should cut a kernel's work into: one per thread, or 1 (also inside
// a parallel region, where every thread is taken).
inline int parts_for(bool parallel) {
  return parallel && !in_parallel_region() ? num_threads() : 1;
}

// Calls body(part, parts) for every part in [0, parts), one part per thread; a single part runs
// as the call body(0, 1) on this thread without entering OpenMP at all. (A region whose if()
// clause is false still sets up a team: ~0.6 us, as long as preprocessing a whole frame takes.)
template <typename Body>
void run_in_parts(int parts, const Body& body) {
  if (parts <= 1) {
    body(0, 1);
    return;
  }
#pragma omp parallel for num_threads(parts) schedule(static)
  for (int part = 0; part < parts; ++part) body(part, parts);
}

// Calls body(i, part) for every i in [0, n) on `parts` threads, each taking the next i not yet
// taken: for items of uneven cost, or a core that another process keeps busy. `part` in
// [0, parts) names the thread (for state a thread keeps across its items). Whatever the order,
// body must leave item i's result where i alone decides, for results independent of the order.
template <typename Body>
void for_each_item(int64_t n, int parts, const Body& body) {
  if (parts <= 1 || n <= 1) {
    for (int64_t i = 0; i < n; ++i) body(i, 0);
    return;
  }
  int64_t next = 0;
#pragma omp parallel num_threads(parts)
  {
#ifdef _OPENMP
    const int part = omp_get_thread_num();
#else
    const int part = 0;
#endif
    for (;;) {
      int64_t i;
#pragma omp atomic capture
      i = next++;
      if (i >= n) break;
      body(i, part);
    }
  }
}

// Calls body(i) for every i in [0, n), each part taking a contiguous range.
template <typename Body>
void parallel_for(int64_t n, bool parallel, const Body& body) {
  run_in_parts(parts_for(parallel && n > 1), [&](int part, int parts) {
    for (int64_t i = n * part / parts; i < n * (part + 1) / parts; ++i) body(i);
  });
}

}  // namespace fastpong

// Hot loops are compiled twice, for the x86-64 baseline and for x86-64-v3 (AVX2 + FMA), and the
// loader picks the best one for the CPU at run time. Users get AVX2 without -march=native.
#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(FASTPONG_NO_CLONES)
#define FASTPONG_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
// For loops that keep more sums in registers than AVX2's 16 can hold: an AVX-512 version too.
#define FASTPONG_SIMD_CLONES_WIDE \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FASTPONG_SIMD_CLONES
#define FASTPONG_SIMD_CLONES_WIDE
#endif

// Spawning threads costs a few microseconds: below this much work a kernel stays serial.
#define FASTPONG_PARALLEL_MIN_WORK 200000
