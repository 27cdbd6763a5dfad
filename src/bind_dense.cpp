// The MIT lab's dense softmax policy and categorical sampling.
#include <pybind11/stl.h>

#include <algorithm>
#include <optional>

#include <cstring>

#include "checks.hpp"
#include "fastpong/dense.hpp"
#include "use_guard.hpp"

namespace fastpong::bind {
namespace {

using IndexArray = py::array_t<int64_t, py::array::c_style>;

// Below about this many operations (a few microseconds) a call keeps the GIL (see ReleaseGilIf).
constexpr int64_t kReleaseGilWork = 16384;

// Keras' names: hidden layers "dense_0", "dense_1"..., the output layer "logits".
std::string layer_name(const DensePolicy& policy, int64_t l) {
  return l + 1 < policy.num_layers() ? "dense_" + std::to_string(l) : std::string("logits");
}

py::tuple hidden_sizes(const DensePolicy& policy) {
  const auto& w = policy.widths();
  py::tuple hidden(w.size() - 2);
  for (size_t i = 1; i + 1 < w.size(); ++i) hidden[i - 1] = w[i];
  return hidden;
}

// {name: array} in layer order; `views` gives arrays over the policy's own storage (kept alive by
// `owner`), otherwise zeroed arrays of the same shapes.
py::dict parameter_arrays(DensePolicy& policy, const py::object& owner, bool views) {
  py::dict out;
  for (int64_t l = 0; l < policy.num_layers(); ++l) {
    const int64_t in = policy.widths()[l], units = policy.widths()[l + 1];
    const std::string name = layer_name(policy, l);
    if (views) {
      out[py::str(name + "/kernel")] = FloatArray({in, units}, policy.kernel(l), owner);
      out[py::str(name + "/bias")] = FloatArray({units}, policy.bias(l), owner);
    } else {
      FloatArray kernel({in, units}), bias(units);
      std::fill_n(kernel.mutable_data(), kernel.size(), 0.0f);
      std::fill_n(bias.mutable_data(), bias.size(), 0.0f);
      out[py::str(name + "/kernel")] = kernel;
      out[py::str(name + "/bias")] = bias;
    }
  }
  return out;
}

// A DensePolicy is registered by its parameters' storage, as a ConvPolicy is (bind_conv.cpp): an
// optimizer step on the NumPy views must not overlap a forward pass in another thread.
void add_parameters(UseScopes& use, const DensePolicy& policy) {
  for (int64_t l = 0; l < policy.num_layers(); ++l) {
    use.add(policy.kernel(l), "DensePolicy", Use::kRead);
    use.add(policy.bias(l), "DensePolicy", Use::kRead);
  }
}

// Observations (D,) or (N, D) as float32, checked finite; `single` tells which came.
FloatArray as_observations(const DensePolicy& policy, const py::handle& obj, const char* name,
                           bool allow_single, bool& single) {
  FloatArray x = as_float32(obj, name);
  const int64_t d = policy.input_size();
  single = x.ndim() == 1;
  if (!(allow_single && single && x.shape(0) == d) && !(x.ndim() == 2 && x.shape(1) == d)) {
    const std::string dim = std::to_string(d);
    fail(std::string(name) + " must have shape " + (allow_single ? "(" + dim + ",) or " : "") +
         "(N, " + dim + "), got " + describe_object(obj));
  }
  require_finite(x.data(), x.size(), name);
  return x;
}

// The forward pass, giving log-probabilities or probabilities, shaped like the observations.
FloatArray forward(const DensePolicy& policy, const py::handle& obs_obj, bool log) {
  bool single = false;
  FloatArray x = as_observations(policy, obs_obj, "obs", /*allow_single=*/true, single);
  const int64_t n = single ? 1 : x.shape(0), a = policy.num_actions();
  FloatArray out = single ? FloatArray(a) : FloatArray({n, a});
  const float* in = x.data();
  float* result = out.mutable_data();
  int64_t work = 0;  // multiply-adds
  for (size_t l = 0; l + 1 < policy.widths().size(); ++l) {
    work += n * policy.widths()[l] * policy.widths()[l + 1];
  }
  // A CartPole step (N of 1 to 8, 4-32-2) takes well under a microsecond: keep the GIL there,
  // and then no other call can start meanwhile; the one check is that none changes the weights.
  if (work < kReleaseGilWork) {
    if (!objects_in_use().empty()) {
      for (int64_t l = 0; l < policy.num_layers(); ++l) {
        require_not_changing(policy.kernel(l), "DensePolicy");
        require_not_changing(policy.bias(l), "DensePolicy");
      }
    }
    policy.forward(in, n, log ? result : nullptr, log ? nullptr : result);
  } else {
    UseScopes use;
    add_parameters(use, policy);
    use.enter();
    py::gil_scoped_release release;
    policy.forward(in, n, log ? result : nullptr, log ? nullptr : result);
  }
  return out;
}

// Any integer array of T actions, each in [0, num_actions), as int64.
IndexArray as_actions(const py::handle& obj, int64_t steps, int64_t num_actions) {
  py::array a;
  try {
    a = py::array::ensure(obj);
  } catch (...) {
  }
  const std::string expected = "actions must be an integer array of shape (" +
                               std::to_string(steps) + ",)";
  if (!a) fail(expected + ", got " + describe_object(obj));
  const char kind = a.dtype().kind();
  // An empty episode's actions may come as np.array([]), which numpy makes float64.
  const bool integral = kind == 'i' || kind == 'u' || (steps == 0 && kind == 'f');
  if (!integral || !has_shape(a, {steps})) {
    fail(expected + ", got " + describe(a));
  }
  // forcecast: the kinds were checked above; other integer types (and an empty float array) are
  // converted rather than refused.
  IndexArray actions =
      py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(a);
  const int64_t* values = actions.data();
  for (int64_t t = 0; t < steps; ++t) {
    if (values[t] < 0 || values[t] >= num_actions) {
      fail("actions must be in [0, " + std::to_string(num_actions) + "), got " +
           std::to_string(values[t]) + " at step " + std::to_string(t));
    }
  }
  return actions;
}

void accumulate_gradient(DensePolicy& policy, const py::handle& obs_obj,
                         const py::handle& actions_obj, const py::handle& advantages_obj,
                         const py::handle& grads_obj, std::optional<double> scale_arg,
                         const py::handle& input_grad_obj) {
  bool single = false;
  FloatArray x = as_observations(policy, obs_obj, "obs", /*allow_single=*/false, single);
  const int64_t steps = x.shape(0);
  IndexArray actions = as_actions(actions_obj, steps, policy.num_actions());
  FloatArray advantages = as_float32(advantages_obj, "advantages");
  require_shape(advantages, {steps}, "advantages", advantages_obj);
  require_finite(advantages.data(), steps, "advantages");
  double scale = steps > 0 ? 1.0 / static_cast<double>(steps) : 0.0;
  if (scale_arg) {
    scale = *scale_arg;
    if (!std::isfinite(static_cast<float>(scale))) {
      fail("scale must be a finite number, got " + py::repr(py::float_(scale)).cast<std::string>());
    }
  }
  if (!py::isinstance<py::dict>(grads_obj)) {
    fail("grads must be a dict of name -> float32 array (policy.gradient_buffer()), got " +
         describe_object(grads_obj));
  }
  const auto grads_dict = py::reinterpret_borrow<py::dict>(grads_obj);
  DenseTensors grads;
  for (int64_t l = 0; l < policy.num_layers(); ++l) {
    const int64_t in = policy.widths()[l], units = policy.widths()[l + 1];
    const std::string name = layer_name(policy, l);
    for (const std::string& key : {name + "/kernel", name + "/bias"}) {
      if (!grads_dict.contains(key)) fail("grads is missing '" + key + "'");
    }
    grads.kernels.push_back(
        writable_float32(grads_dict[py::str(name + "/kernel")], {in, units},
                         "grads['" + name + "/kernel']"));
    grads.biases.push_back(writable_float32(grads_dict[py::str(name + "/bias")], {units},
                                            "grads['" + name + "/bias']"));
  }
  float* input_grad = nullptr;
  if (!input_grad_obj.is_none()) {
    input_grad = writable_float32(input_grad_obj, {steps, policy.input_size()}, "input_grad");
  }
  const float* in = x.data();
  const int64_t* acts = actions.data();
  const float* adv = advantages.data();
  UseScopes use;
  add_parameters(use, policy);
  for (size_t l = 0; l < grads.kernels.size(); ++l) {
    use.add(grads.kernels[l], "a gradient array", Use::kWrite);
    use.add(grads.biases[l], "a gradient array", Use::kWrite);
  }
  if (input_grad != nullptr) use.add(input_grad, "input_grad", Use::kWrite);
  use.enter();
  py::gil_scoped_release release;
  policy.accumulate_gradient(in, acts, adv, steps, static_cast<float>(scale), grads, input_grad);
}

// Checks that every uniform is in [0, 1) in the precision the caller drew it in: a float64 draw
// within 2^-25 of 1 is a valid uniform that rounds to 1.0f here (NumPy's rng.random() gives one
// every ~30 million draws, a crash of every long run before this check), and the kernel takes
// such a 1.0f as the largest float below 1 (see sample_categorical).
void require_unit_interval(const py::handle& obj, const FloatArray& rounded) {
  const py::array source = py::array::ensure(obj);
  if (source && source.dtype().kind() == 'f' && source.itemsize() > 4) {
    const auto wide = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(source);
    // Read through memcpy: a C-contiguous float64 array need not be 8-byte aligned (a view at an
    // odd byte offset), and forcecast does not copy it into alignment.
    const char* bytes = reinterpret_cast<const char*>(wide.data());
    for (py::ssize_t i = 0; i < wide.size(); ++i) {
      double u;
      std::memcpy(&u, bytes + i * sizeof(double), sizeof u);
      if (!(u >= 0.0 && u < 1.0)) {
        fail("uniforms must be in [0, 1), got " + py::repr(py::float_(u)).cast<std::string>() +
             " at row " + std::to_string(i));
      }
    }
    return;
  }
  const float* u = rounded.data();
  for (py::ssize_t i = 0; i < rounded.size(); ++i) {
    if (!(u[i] >= 0.0f && u[i] < 1.0f)) {
      fail("uniforms must be in [0, 1), got " + std::to_string(u[i]) + " at row " +
           std::to_string(i));
    }
  }
}

py::array_t<int32_t> sample_actions(const py::handle& probs_obj, const py::handle& uniforms_obj) {
  FloatArray probs = as_float32(probs_obj, "probs");
  if (probs.ndim() != 2 || probs.shape(1) < 1) {
    fail("probs must have shape (N, A) with A >= 1, got " + describe_object(probs_obj));
  }
  const int64_t n = probs.shape(0), a = probs.shape(1);
  FloatArray uniforms = as_float32(uniforms_obj, "uniforms");
  require_shape(uniforms, {n}, "uniforms", uniforms_obj);
  const float* p = probs.data();
  for (int64_t i = 0; i < n * a; ++i) {
    if (!(p[i] >= 0.0f) || !std::isfinite(p[i])) {
      fail("probs must be finite and >= 0, got " + std::to_string(p[i]) + " at row " +
           std::to_string(i / a) + ", action " + std::to_string(i % a));
    }
  }
  require_unit_interval(uniforms_obj, uniforms);
  const float* u = uniforms.data();
  py::array_t<int32_t> actions(n);
  int32_t* out = actions.mutable_data();
  {
    ReleaseGilIf release(n * a >= kReleaseGilWork);
    sample_categorical(p, n, a, u, out);
  }
  return actions;
}

}  // namespace

void bind_dense(py::module_& m) {
  py::class_<DensePolicy>(m, "_DensePolicy")
      .def(py::init([](int64_t input_size, const std::vector<int64_t>& hidden,
                       int64_t num_actions) {
             require_positive(input_size, "input_size");
             require_positive(num_actions, "num_actions");
             std::vector<int64_t> widths{input_size};
             for (int64_t h : hidden) {
               require_positive(h, "every hidden size");
               widths.push_back(h);
             }
             widths.push_back(num_actions);
             for (size_t l = 0; l + 1 < widths.size(); ++l) {  // each layer's kernel, (in, units)
               require_tensor_shape(widths[l + 1], widths[l]);
             }
             return DensePolicy(widths);
           }),
           py::arg("input_size"), py::arg("hidden"), py::arg("num_actions"))
      .def_property_readonly("input_size", &DensePolicy::input_size)
      .def_property_readonly("num_actions", &DensePolicy::num_actions)
      .def_property_readonly("hidden", &hidden_sizes, "Hidden layer sizes, a tuple.")
      .def(
          "parameters",
          [](py::object self) {
            return parameter_arrays(self.cast<DensePolicy&>(), self, /*views=*/true);
          },
          "{name: float32 array} over the policy's own weights: writing them changes the policy.")
      .def(
          "gradient_buffer",
          [](DensePolicy& self) { return parameter_arrays(self, py::none(), /*views=*/false); },
          "{name: zeroed float32 array} shaped like each parameter.")
      .def(
          "forward", [](const DensePolicy& self, const py::handle& obs) {
            return forward(self, obs, /*log=*/false);
          },
          py::arg("obs"), "obs (N, D) or (D,) float32 -> action probabilities (N, A) or (A,).")
      .def(
          "log_probs", [](const DensePolicy& self, const py::handle& obs) {
            return forward(self, obs, /*log=*/true);
          },
          py::arg("obs"), "obs (N, D) or (D,) float32 -> log-softmax of the logits, (N, A) or (A,).")
      .def("accumulate_gradient", &accumulate_gradient, py::arg("obs"), py::arg("actions"),
           py::arg("advantages"), py::arg("grads"), py::arg("scale") = py::none(),
           py::arg("input_grad") = py::none(),
           "grads[k] += scale * sum_t advantages[t] * d log pi(actions[t] | obs[t]) / d theta_k "
           "(scale defaults to 1 / T; T = 0 does nothing). input_grad, a float32 (T, D) array, "
           "if given, is overwritten with d J / d obs (for a network below this one).");

  m.def("sample_actions", &sample_actions, py::arg("probs"), py::arg("uniforms"),
        "probs (N, A), uniforms (N,) in [0, 1) -> int32 actions (N,) by the inverse CDF: the first "
        "action whose cumulative probability exceeds the uniform.");
}

}  // namespace fastpong::bind
