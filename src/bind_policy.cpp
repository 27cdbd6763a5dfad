// The policy network and the weight-shaped tensors (gradients, optimizer state).
#include "checks.hpp"
#include "fastpong/policy.hpp"
#include "use_guard.hpp"

namespace fastpong::bind {
namespace {

// w1t is (input_size, hidden); the tutorial's W1 is its transpose. Blocked to stay in cache.
void transpose(const float* in, int64_t rows, int64_t cols, float* out) {
  constexpr int64_t kBlock = 32;
  for (int64_t r0 = 0; r0 < rows; r0 += kBlock) {
    for (int64_t c0 = 0; c0 < cols; c0 += kBlock) {
      const int64_t r1 = std::min(rows, r0 + kBlock), c1 = std::min(cols, c0 + kBlock);
      for (int64_t r = r0; r < r1; ++r) {
        for (int64_t c = c0; c < c1; ++c) out[c * rows + r] = in[r * cols + c];
      }
    }
  }
}

// {"W1": (H, D), "W2": (H,)} float32, the tutorial's names and shapes.
py::dict to_model(const PolicyTensors& t) {
  FloatArray w1({t.hidden, t.input_size});
  FloatArray w2(t.hidden);
  float* w1_out = w1.mutable_data();
  {
    py::gil_scoped_release release;
    transpose(t.w1t.data(), t.input_size, t.hidden, w1_out);
  }
  std::copy(t.w2.begin(), t.w2.end(), w2.mutable_data());
  py::dict model;
  model["W1"] = w1;
  model["W2"] = w2;
  return model;
}

void load_model(PolicyTensors& t, const py::handle& model, const std::string& what) {
  // Both methods are used below; a NumPy scalar, say, has __getitem__ but no __contains__.
  if (!py::hasattr(model, "__getitem__") || !py::hasattr(model, "__contains__")) {
    fail(what + " must be a mapping with keys 'W1' and 'W2', got " + describe_object(model));
  }
  for (const char* key : {"W1", "W2"}) {
    if (!py::bool_(model.attr("__contains__")(key))) {
      fail(what + " must have keys 'W1' and 'W2', missing '" + key + "'");
    }
  }
  FloatArray w1 = as_float32(model[py::str("W1")], what + "['W1']");
  FloatArray w2 = as_float32(model[py::str("W2")], what + "['W2']");
  require_shape(w1, {t.hidden, t.input_size}, what + "['W1']", model[py::str("W1")]);
  require_shape(w2, {t.hidden}, what + "['W2']", model[py::str("W2")]);
  require_finite(w1.data(), w1.size(), what + "['W1']");
  require_finite(w2.data(), w2.size(), what + "['W2']");
  const float* w1_in = w1.data();
  {
    py::gil_scoped_release release;
    transpose(w1_in, t.hidden, t.input_size, t.w1t.data());
  }
  std::copy(w2.data(), w2.data() + t.hidden, t.w2.begin());
}

py::tuple forward_sparse(const Policy& self, const SparseRows& x) {
  require_indices_below(x, self.input_size(), "x");
  const int64_t n = x.rows();
  FloatArray p(n);
  FloatArray h({n, self.hidden()});
  float* p_out = p.mutable_data();
  float* h_out = h.mutable_data();
  {
    UseScope use(&self, "Policy", Use::kRead);
    py::gil_scoped_release release;
    self.forward_sparse(x, p_out, h_out);
  }
  return py::make_tuple(p, h);
}

py::tuple forward_dense(const Policy& self, const py::handle& x_obj) {
  FloatArray x = as_float32(x_obj, "x");
  const int64_t d = self.input_size();
  const bool single = x.ndim() == 1;
  if (!(single && x.shape(0) == d) && !(x.ndim() == 2 && x.shape(1) == d)) {
    fail("x must have shape (" + std::to_string(d) + ",) or (N, " + std::to_string(d) +
         "), got " + describe_object(x_obj));
  }
  const int64_t n = single ? 1 : x.shape(0);
  FloatArray p(n);
  FloatArray h = single ? FloatArray(self.hidden()) : FloatArray({n, self.hidden()});
  const float* x_in = x.data();
  float* p_out = p.mutable_data();
  float* h_out = h.mutable_data();
  // The kernel checks x for NaN and infinity in the same pass that finds its nonzeros. A single
  // frame difference takes about a microsecond: it keeps the GIL (see ReleaseGilIf), so no other
  // thread's call can start meanwhile, and the one check is that none is changing the weights.
  int64_t first_not_finite;
  if (single) {
    require_not_changing(&self, "Policy");
    first_not_finite = self.forward_dense(x_in, n, p_out, h_out);
  } else {
    UseScope use(&self, "Policy", Use::kRead);
    py::gil_scoped_release release;
    first_not_finite = self.forward_dense(x_in, n, p_out, h_out);
  }
  if (first_not_finite >= 0) fail_not_finite(x_in, first_not_finite, "x");
  if (single) return py::make_tuple(py::float_(p_out[0]), h);
  return py::make_tuple(p, h);
}

// One function rather than two overloads: pybind11 would try the SparseFrames overload first and
// fail on every array, which took a third of a single-frame forward pass.
py::tuple forward(const Policy& self, const py::handle& x) {
  if (py::isinstance<SparseRows>(x)) return forward_sparse(self, x.cast<const SparseRows&>());
  return forward_dense(self, x);
}

py::dict backward(const Policy& self, const py::handle& eph_obj, const py::handle& epx_obj,
                  const py::handle& epdlogp_obj) {
  FloatArray eph = as_float32(eph_obj, "eph");
  FloatArray epx = as_float32(epx_obj, "epx");
  FloatArray epdlogp = as_float32(epdlogp_obj, "epdlogp");
  const int64_t steps = eph.ndim() == 2 ? eph.shape(0) : -1;
  if (steps < 0 || eph.shape(1) != self.hidden()) {
    fail("eph must have shape (T, " + std::to_string(self.hidden()) + "), got " +
         describe_object(eph_obj));
  }
  require_shape(epx, {steps, self.input_size()}, "epx", epx_obj);
  // The tutorial stacks dlogp into a column, (T, 1); a flat (T,) is accepted as well.
  if (!has_shape(epdlogp, {steps}) && !has_shape(epdlogp, {steps, 1})) {
    fail("epdlogp must have shape (" + std::to_string(steps) + ",) or (" + std::to_string(steps) +
         ", 1), got " + describe_object(epdlogp_obj));
  }
  require_finite(eph.data(), eph.size(), "eph");
  require_finite(epdlogp.data(), epdlogp.size(), "epdlogp");
  // epx (25 MB for a 1,000-step episode) is checked by the kernel, in the pass that finds its
  // nonzeros: a check of its own was a second full read, most of the call's time.
  // The result in the tutorial's layout, written by the kernel: no transpose of a GradientBuffer.
  // np.zeros: the pages come zeroed from the system, and only those the episode touches are.
  py::module_ np = py::module_::import("numpy");
  auto w1 = np.attr("zeros")(py::make_tuple(self.hidden(), self.input_size()), "float32")
                .cast<FloatArray>();
  FloatArray w2(self.hidden());
  float* w1_out = w1.mutable_data();
  float* w2_out = w2.mutable_data();
  int64_t first_not_finite;
  {
    UseScope use(&self, "Policy", Use::kRead);
    py::gil_scoped_release release;
    first_not_finite = self.backward_dense(eph.data(), epx.data(), epdlogp.data(), steps, w1_out, w2_out);
  }
  if (first_not_finite >= 0) fail_not_finite(epx.data(), first_not_finite, "epx");
  py::dict model;
  model["W1"] = w1;
  model["W2"] = w2;
  return model;
}

void accumulate_gradient(const Policy& self, const EpisodeBuffer& episode,
                         const py::handle& advantages_obj, PolicyTensors& grads) {
  require_policy_shapes(episode.hidden(), episode.input_size(), self, "episode");
  require_policy_shapes(grads.hidden, grads.input_size, self, "grads");
  FloatArray advantages = as_float32(advantages_obj, "advantages");
  require_shape(advantages, {episode.steps()}, "advantages", advantages_obj);
  require_finite(advantages.data(), advantages.size(), "advantages");
  const float* adv = advantages.data();
  UseScope use_policy(&self, "Policy", Use::kRead);
  UseScope use_episode(&episode, "EpisodeBuffer", Use::kRead);
  UseScope use_grads(&grads, "GradientBuffer", Use::kWrite);
  py::gil_scoped_release release;
  self.accumulate_gradient(episode, adv, grads);
}

}  // namespace

void bind_policy(py::module_& m) {
  py::class_<PolicyTensors>(
      m, "GradientBuffer",
      "Tensors shaped like a policy's weights (gradients, optimizer state), in its fast layout.")
      .def(py::init([](int64_t hidden, int64_t input_size) {
             require_tensor_shape(hidden, input_size);
             return PolicyTensors(input_size, hidden);
           }),
           py::arg("hidden") = 200, py::arg("input_size") = 6400)
      .def_readonly("hidden", &PolicyTensors::hidden)
      .def_readonly("input_size", &PolicyTensors::input_size)
      .def("zero",
           [](PolicyTensors& self) {
             require_not_in_use(&self, "GradientBuffer");
             self.zero();
           })
      .def(
          "to_model",
          [](const PolicyTensors& self) {
            UseScope use(&self, "GradientBuffer", Use::kRead);
            return to_model(self);
          },
          "{'W1': (H, D), 'W2': (H,)} float32 copies.")
      .def(
          "load_model",
          [](PolicyTensors& self, const py::handle& model) {
            UseScope use(&self, "GradientBuffer", Use::kWrite);
            load_model(self, model, "model");
          },
          py::arg("model"), "Overwrites the values from {'W1': (H, D), 'W2': (H,)}.");

  py::class_<Policy>(m, "_Policy")
      .def(py::init([](int64_t hidden, int64_t input_size) {
             require_tensor_shape(hidden, input_size);
             if (input_size > INT32_MAX) fail("input_size must be below 2^31");
             return Policy(input_size, hidden);
           }),
           py::arg("hidden"), py::arg("input_size"))
      .def_property_readonly("hidden", &Policy::hidden)
      .def_property_readonly("input_size", &Policy::input_size)
      .def(
          "to_model",
          [](const Policy& self) {
            UseScope use(&self, "Policy", Use::kRead);
            return to_model(self.weights());
          },
          "The weights as {'W1': (H, D), 'W2': (H,)} float32 copies, the tutorial's layout.")
      .def(
          "load_model",
          [](Policy& self, const py::handle& model) {
            UseScope use(&self, "Policy", Use::kWrite);
            load_model(self.weights(), model, "model");
          },
          py::arg("model"), "Overwrites the weights from {'W1': (H, D), 'W2': (H,)}.")
      .def("forward", &forward, py::arg("x"),
           "x (D,) -> (p, h (H,)); x (N, D) or SparseFrames -> (p (N,), h (N, H)).")
      .def("backward", &backward, py::arg("eph"), py::arg("epx"), py::arg("epdlogp"),
           "The tutorial's policy_backward: {'W1': (H, D), 'W2': (H,)} for one episode.")
      .def("accumulate_gradient", &accumulate_gradient, py::arg("episode"),
           py::arg("advantages"), py::arg("grads"),
           "grads += backward pass of an EpisodeBuffer with dlogp scaled by advantages.");
}

}  // namespace fastpong::bind
