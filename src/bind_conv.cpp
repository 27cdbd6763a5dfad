// The MIT lab's CNN policy and its 40x40 frame changes.
#include <pybind11/stl.h>

#include "checks.hpp"
#include "fastpong/conv.hpp"
#include "fastpong/frames.hpp"
#include "fastpong/lab_frames.hpp"
#include "use_guard.hpp"

namespace fastpong::bind {
namespace {

using FrameArray = py::array_t<uint8_t, py::array::c_style>;
constexpr int64_t kSide = ConvPolicy::kInputSide;
// A forward pass keeps every layer's activations of the whole batch (about 14 KB a frame): past
// this many frames that is gigabytes, a mistake rather than a request, refused as a ValueError up
// front instead of a MemoryError from inside the kernel. Training batches are tens of frames, and
// accumulate_gradient works in chunks, so it takes episodes of any length.
constexpr int64_t kMaxForwardFrames = int64_t{1} << 16;

// uint8 RGB frames as ALE renders them: (210, 160, 3) or (N, 210, 160, 3), C-contiguous.
FrameArray as_rgb_frames(const py::handle& obj, const std::string& name) {
  py::array a;
  try {
    a = py::array::ensure(obj);
  } catch (...) {
  }
  const std::string expected = "uint8 of shape (210, 160, 3) or (N, 210, 160, 3)";
  if (!a) fail(name + " must be " + expected + ", got " + describe_object(obj));
  const bool shape_ok =
      (a.ndim() == 3 || a.ndim() == 4) && a.shape(a.ndim() - 3) == kFrameHeight &&
      a.shape(a.ndim() - 2) == kFrameWidth && a.shape(a.ndim() - 1) == kFrameChannels;
  if (!a.dtype().is(py::dtype::of<uint8_t>()) || !shape_ok) {
    fail(name + " must be " + expected + ", got " + describe(a));
  }
  return FrameArray::ensure(a);
}

// A single frame gives a (40, 40) result, a batch (N, 40, 40).
FloatArray lab_images(int64_t n, bool single) {
  return single ? FloatArray({kSide, kSide}) : FloatArray({n, kSide, kSide});
}

FloatArray lab_preprocess_py(const py::handle& frames_obj) {
  FrameArray frames = as_rgb_frames(frames_obj, "frames");
  const bool single = frames.ndim() == 3;
  const int64_t n = single ? 1 : frames.shape(0);
  FloatArray images = lab_images(n, single);
  const uint8_t* in = frames.data();
  float* out = images.mutable_data();
  ReleaseGilIf release(n > 1);
  lab_preprocess_frames(in, n, out);
  return images;
}

FloatArray lab_frame_change_py(const py::handle& prev_obj, const py::handle& frames_obj) {
  FrameArray prev = as_rgb_frames(prev_obj, "prev_frames");
  FrameArray frames = as_rgb_frames(frames_obj, "frames");
  if (prev.ndim() != frames.ndim() || (prev.ndim() == 4 && prev.shape(0) != frames.shape(0))) {
    fail("prev_frames and frames must have the same shape, got " + describe(prev) + " and " +
         describe(frames));
  }
  const bool single = frames.ndim() == 3;
  const int64_t n = single ? 1 : frames.shape(0);
  FloatArray changes = lab_images(n, single);
  const uint8_t* a = prev.data();
  const uint8_t* b = frames.data();
  float* out = changes.mutable_data();
  ReleaseGilIf release(n > 1);
  lab_frame_changes(a, b, n, out);
  return changes;
}

// Frame changes as (N, 40, 40) or (N, 40, 40, 1) float32 (converted from any real dtype), finite.
FloatArray as_observations(const py::handle& obj, const std::string& name) {
  FloatArray x = as_float32(obj, name);
  const bool ok = (x.ndim() == 3 || (x.ndim() == 4 && x.shape(3) == 1)) && x.shape(1) == kSide &&
                  x.shape(2) == kSide;
  if (!ok) {
    fail(name + " must have shape (N, 40, 40) or (N, 40, 40, 1) (40x40 frame changes), got " +
         describe_object(obj));
  }
  require_finite(x.data(), x.size(), name);
  return x;
}

// A ConvPolicy is registered by its parameters' storage, which Python changes through the NumPy
// views of parameters() (an optimizer's adam_step_arrays registers those arrays as written): a
// step of the weights while another thread runs a forward pass raises instead of mixing weights.
void add_parameters(UseScopes& use, const ConvPolicy& self) {
  for (int i = 0; i < ConvPolicy::kTensors; ++i) use.add(self.tensor(i), "ConvPolicy", Use::kRead);
}

// (N, 6) probabilities or log-probabilities of a batch of observations.
void require_forward_frames(int64_t n) {
  if (n > kMaxForwardFrames) {
    fail("obs must hold at most " + std::to_string(kMaxForwardFrames) +
         " frames per call (split the batch), got " + std::to_string(n));
  }
}

FloatArray forward(const ConvPolicy& self, const py::handle& obs_obj, bool log) {
  // An array is measured before it is converted: a float32 copy of an absurd batch (a broadcast
  // view, say) would be the allocation the limit is there to refuse.
  if (py::isinstance<py::array>(obs_obj)) {
    const auto raw = py::reinterpret_borrow<py::array>(obs_obj);
    if (raw.ndim() >= 1) require_forward_frames(raw.shape(0));
  }
  FloatArray x = as_observations(obs_obj, "obs");
  const int64_t n = x.shape(0);
  require_forward_frames(n);
  FloatArray out({n, ConvPolicy::kActions});
  const float* in = x.data();
  float* o = out.mutable_data();
  {
    UseScopes use;
    add_parameters(use, self);
    use.enter();
    py::gil_scoped_release release;
    self.forward(in, n, log ? o : nullptr, log ? nullptr : o);
  }
  return out;
}

// A writable float32 view of tensor i whose base keeps the policy alive.
py::array tensor_view(ConvPolicy& self, int i, const py::handle& owner) {
  return py::array_t<float>(ConvPolicy::tensor_shape(i), self.tensor(i), owner);
}

// The gradient arrays of the first `count` tensors, from grads by name: each written in place, so
// each must already be a C-contiguous, aligned, writable float32 array of the tensor's shape, and
// none may be a parameter or another entry's array. `source` and `each` word the two errors.
std::array<float*, ConvPolicy::kTensors> gradient_arrays(const ConvPolicy& self, const py::dict& grads,
                                                         int count, const std::string& source,
                                                         const std::string& each) {
  std::array<float*, ConvPolicy::kTensors> out{};
  for (int i = 0; i < count; ++i) {
    const std::string& name = ConvPolicy::tensor_name(i);
    if (!grads.contains(name)) fail("grads must have a '" + name + "' entry (" + source + ")");
    out[i] = writable_float32(grads[py::str(name)], ConvPolicy::tensor_shape(i),
                              "grads['" + name + "']");
  }
  for (int i = 0; i < count; ++i) {
    for (int j = 0; j < ConvPolicy::kTensors; ++j) {
      if (out[i] == self.tensor(j) || (j < i && out[i] == out[j])) {
        fail("grads must hold its own array for " + each +
             ", not the policy's parameters or one array twice");
      }
    }
  }
  return out;
}

void accumulate_gradient(const ConvPolicy& self, const py::handle& obs_obj,
                         const py::handle& actions_obj, const py::handle& advantages_obj,
                         const py::dict& grads, double scale, double entropy_coef) {
  FloatArray x = as_observations(obs_obj, "obs");
  const int64_t steps = x.shape(0);
  py::array actions_any = py::array::ensure(actions_obj);
  if (!actions_any || (actions_any.dtype().kind() != 'i' && actions_any.dtype().kind() != 'u')) {
    fail("actions must be an integer array of shape (" + std::to_string(steps) + ",), got " +
         describe_object(actions_obj));
  }
  auto actions = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(
      actions_any);
  require_shape(actions, {steps}, "actions", actions_obj);
  const int64_t* a = actions.data();
  for (int64_t t = 0; t < steps; ++t) {
    if (a[t] < 0 || a[t] >= ConvPolicy::kActions) {
      fail("actions must be in [0, 6), got " + std::to_string(a[t]) + " at step " +
           std::to_string(t));
    }
  }
  FloatArray advantages = as_float32(advantages_obj, "advantages");
  require_shape(advantages, {steps}, "advantages", advantages_obj);
  require_finite(advantages.data(), advantages.size(), "advantages");
  if (!std::isfinite(scale)) fail("scale must be finite, got " + std::to_string(scale));
  if (!(std::isfinite(entropy_coef) && entropy_coef >= 0.0)) {
    fail("entropy_coef must be a finite number >= 0, got " + std::to_string(entropy_coef));
  }
  const std::array<float*, ConvPolicy::kTensors> out = gradient_arrays(
      self, grads, ConvPolicy::kTensors, "gradient_buffer()", "every parameter (gradient_buffer())");
  const float* xin = x.data();
  const float* adv = advantages.data();
  // The gradient arrays are registered by their data: two threads adding into one buffer, or a
  // step of it while a gradient is added, would race.
  UseScopes use;
  add_parameters(use, self);
  for (float* g : out) use.add(g, "a CNN gradient array", Use::kWrite);
  use.enter();
  py::gil_scoped_release release;
  self.accumulate_gradient(xin, a, adv, steps, static_cast<float>(scale), out,
                           static_cast<float>(entropy_coef));
}

// The flattened conv output of a batch of observations: (N, 576), the actor-critic's trunk.
FloatArray features(const ConvPolicy& self, const py::handle& obs_obj, bool keep) {
  if (py::isinstance<py::array>(obs_obj)) {
    const auto raw = py::reinterpret_borrow<py::array>(obs_obj);
    if (raw.ndim() >= 1) require_forward_frames(raw.shape(0));
  }
  FloatArray x = as_observations(obs_obj, "obs");
  const int64_t n = x.shape(0);
  require_forward_frames(n);
  FloatArray out({n, ConvPolicy::feature_size()});
  const float* in = x.data();
  float* o = out.mutable_data();
  {
    UseScopes use;
    add_parameters(use, self);
    if (keep) use.add(self.kept_activations(), "ConvPolicy's kept activations", Use::kWrite);
    use.enter();
    py::gil_scoped_release release;
    self.features(in, n, o, keep);
  }
  return out;
}

void accumulate_feature_gradient(const ConvPolicy& self, const py::handle& obs_obj,
                                 const py::handle& flat_grad_obj, const py::dict& grads) {
  FloatArray x = as_observations(obs_obj, "obs");
  const int64_t steps = x.shape(0);
  FloatArray flat_grad = as_float32(flat_grad_obj, "flat_grad");
  require_shape(flat_grad, {steps, ConvPolicy::feature_size()}, "flat_grad", flat_grad_obj);
  require_finite(flat_grad.data(), flat_grad.size(), "flat_grad");
  constexpr int kConvTensors = 2 * ConvPolicy::kConvLayers;
  const std::array<float*, ConvPolicy::kTensors> out =
      gradient_arrays(self, grads, kConvTensors, "the conv layers'", "every conv parameter");
  const float* xin = x.data();
  const float* fg = flat_grad.data();
  UseScopes use;
  add_parameters(use, self);
  for (int i = 0; i < kConvTensors; ++i) use.add(out[i], "a CNN gradient array", Use::kWrite);
  use.add(self.kept_activations(), "ConvPolicy's kept activations", Use::kRead);
  use.enter();
  py::gil_scoped_release release;
  self.accumulate_feature_gradient(xin, fg, steps, out);
}

}  // namespace

void bind_conv(py::module_& m) {
  m.def("lab_preprocess", &lab_preprocess_py, py::arg("frames"),
        "The MIT lab's 40x40 image of (210, 160, 3) or (N, 210, 160, 3) uint8 frames: the "
        "tutorial's 80x80 binary image, 3x3-dilated, every second row and column. float32 in "
        "{0, 1}.");
  m.def("lab_frame_change", &lab_frame_change_py, py::arg("prev_frames"), py::arg("frames"),
        "The MIT lab's network input, lab_preprocess(prev_frames) - lab_preprocess(frames): "
        "(40, 40) or (N, 40, 40) float32 in {-1, 0, 1}.");
  m.def("conv_kernels", &conv_kernels, "GEMM kernel variants this CPU runs, best first.");
  m.def("conv_kernel", &conv_kernel, "The GEMM kernel variant in use.");
  m.def("use_conv_kernel", &use_conv_kernel, py::arg("name"),
        "Switches the GEMM kernel variant (tests, benchmarks); False for an unknown name.");
  m.def("set_zero_frame_skipping", &set_zero_frame_skipping, py::arg("on"),
        "Whether batched CNN forward passes copy the conv outputs that see no change from the "
        "zero frame's and build the rest from its pre-activations (default True; the results agree to "
        "float32 rounding either way).");
  m.def("zero_frame_skipping", &zero_frame_skipping);

  py::class_<ConvPolicy>(m, "_ConvPolicy")
      .def(py::init<>())
      .def_property_readonly_static(
          "tensor_names",
          [](const py::object&) {
            std::vector<std::string> v;
            for (int i = 0; i < ConvPolicy::kTensors; ++i) v.push_back(ConvPolicy::tensor_name(i));
            return v;
          })
      .def_property_readonly_static(
          "tensor_shapes",
          [](const py::object&) {
            std::vector<std::vector<int64_t>> v;
            for (int i = 0; i < ConvPolicy::kTensors; ++i) v.push_back(ConvPolicy::tensor_shape(i));
            return v;
          })
      .def(
          "parameters",
          [](py::object self_obj) {
            ConvPolicy& self = self_obj.cast<ConvPolicy&>();
            py::dict d;
            for (int i = 0; i < ConvPolicy::kTensors; ++i) {
              d[py::str(ConvPolicy::tensor_name(i))] = tensor_view(self, i, self_obj);
            }
            return d;
          },
          "{name: writable float32 view} of every tensor, Keras' names and layouts.")
      .def(
          "forward", [](const ConvPolicy& self, const py::handle& obs) {
            return forward(self, obs, false);
          },
          py::arg("obs"))
      .def(
          "log_probs", [](const ConvPolicy& self, const py::handle& obs) {
            return forward(self, obs, true);
          },
          py::arg("obs"))
      .def("accumulate_gradient", &accumulate_gradient, py::arg("obs"), py::arg("actions"),
           py::arg("advantages"), py::arg("grads"), py::arg("scale"),
           py::arg("entropy_coef") = 0.0)
      .def_property_readonly_static(
          "feature_size", [](const py::object&) { return ConvPolicy::feature_size(); })
      .def("features", &features, py::arg("obs"), py::arg("keep") = false,
           "Frame changes (N, 40, 40[, 1]) -> the flattened conv output (N, 576), float32. With "
           "keep, the batch's activations are kept for the next accumulate_feature_gradient on "
           "the same frames and conv weights, which then skips its forward pass.")
      .def("accumulate_feature_gradient", &accumulate_feature_gradient, py::arg("obs"),
           py::arg("flat_grad"), py::arg("grads"),
           "grads[conv tensors] += the gradient of sum(flat_grad * features(obs)); the dense "
           "tensors' entries of grads are not touched.");
}

}  // namespace fastpong::bind
