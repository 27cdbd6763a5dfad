#include "fastpong/parallel.hpp"

#include <atomic>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace fastpong {
namespace {

int initial_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// Kept here rather than in OpenMP's per-thread setting, so that kernels called from any Python
// thread use the same count.
std::atomic<int> g_threads{initial_threads()};

}  // namespace

int num_threads() { return g_threads.load(std::memory_order_relaxed); }

void set_num_threads(int n) {
#ifdef _OPENMP
  g_threads.store(n < 1 ? 1 : n, std::memory_order_relaxed);
#else
  (void)n;
#endif
}

bool in_parallel_region() {
#ifdef _OPENMP
  return omp_in_parallel() != 0;
#else
  return false;
#endif
}

bool has_openmp() {
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
}

}  // namespace fastpong
