// Thread count and build facts.
#include "checks.hpp"
#include "fastpong/parallel.hpp"
#include "use_guard.hpp"

namespace fastpong::bind {

void bind_runtime(py::module_& m) {
  m.def("get_num_threads", &num_threads, "Threads the batched kernels use.");
  m.def(
      "set_num_threads",
      [](int64_t n) {
        // An absurd count would make OpenMP abort the process trying to start the threads.
        constexpr int64_t kMaxThreads = 1024;
        if (n <= 0 || n > kMaxThreads) {
          fail("threads must be an integer in [1, " + std::to_string(kMaxThreads) + "], got " +
               std::to_string(n));
        }
        set_num_threads(static_cast<int>(n));
      },
      py::arg("threads"), "Sets the threads the batched kernels use (1 without OpenMP).");
  m.def("has_openmp", &has_openmp, "True when the kernels were compiled with OpenMP.");
  m.def(
      "_objects_in_use", [] { return objects_in_use().size(); },
      "For tests: how many objects calls that released the GIL are reading or changing now.");
}

}  // namespace fastpong::bind
