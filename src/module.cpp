// fastpong._core: the compiled kernels. Each area binds itself from its own file.
#include <pybind11/pybind11.h>

namespace fastpong::bind {
void bind_runtime(pybind11::module_& m);
void bind_frames(pybind11::module_& m);
void bind_policy(pybind11::module_& m);
void bind_training(pybind11::module_& m);
void bind_dense(pybind11::module_& m);
void bind_adam(pybind11::module_& m);
void bind_conv(pybind11::module_& m);
}  // namespace fastpong::bind

PYBIND11_MODULE(_core, m) {
  m.doc() = "fastpong's C++ kernels: frames, policy forward/backward, returns, RMSProp, the MIT lab's CNN policy.";
  fastpong::bind::bind_runtime(m);
  fastpong::bind::bind_frames(m);
  fastpong::bind::bind_policy(m);
  fastpong::bind::bind_training(m);
  fastpong::bind::bind_dense(m);
  fastpong::bind::bind_adam(m);
  fastpong::bind::bind_conv(m);
}
