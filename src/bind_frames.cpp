// Frames: preprocessing, the sparse frame-difference rows, and the per-environment differencer.
#include <pybind11/stl.h>

#include "checks.hpp"
#include "fastpong/frames.hpp"
#include "use_guard.hpp"

namespace fastpong::bind {
namespace {

constexpr int64_t kH = kFrameHeight, kW = kFrameWidth, kC = kFrameChannels;

// Frames must be uint8 RGB as ALE renders them; a float or grayscale frame is a mistake upstream.
py::array_t<uint8_t, py::array::c_style> as_frames(const py::handle& obj, bool allow_single,
                                                   const std::string& name) {
  py::array a;
  try {
    a = py::array::ensure(obj);
  } catch (...) {
  }
  const std::string expected = allow_single ? "uint8 of shape (210, 160, 3) or (N, 210, 160, 3)"
                                            : "uint8 of shape (N, 210, 160, 3)";
  if (!a) fail(name + " must be " + expected + ", got " + describe_object(obj));
  const bool single = has_shape(a, {kH, kW, kC});
  const bool batch = a.ndim() == 4 && a.shape(1) == kH && a.shape(2) == kW && a.shape(3) == kC;
  const bool is_uint8 = a.dtype().is(py::dtype::of<uint8_t>());
  if (!is_uint8 || !(batch || (allow_single && single))) {
    fail(name + " must be " + expected + ", got " + describe(a));
  }
  // A strided view (say frames[:, ::-1]) is copied; the caller's array is never written.
  return py::array_t<uint8_t, py::array::c_style>::ensure(a);
}

// True for the common call, one C-contiguous uint8 (210, 160, 3) frame as ALE returns it, which
// needs neither as_frames' conversions nor threads: the kernel takes about a microsecond, and the
// general path's overhead was as much again.
bool is_plain_frame(const py::handle& obj) {
  if (!py::isinstance<py::array>(obj)) return false;
  const auto a = py::reinterpret_borrow<py::array>(obj);
  return a.ndim() == 3 && a.shape(0) == kH && a.shape(1) == kW && a.shape(2) == kC &&
         (a.flags() & py::array::c_style) && a.dtype().num() == py::detail::npy_api::NPY_UBYTE_;
}

FloatArray preprocess(const py::handle& frame) {
  if (is_plain_frame(frame)) {
    FloatArray image({kImageSide, kImageSide});
    // The GIL stays held (see ReleaseGilIf): releasing it costs ~5% of this call.
    preprocess_frame(static_cast<const uint8_t*>(py::reinterpret_borrow<py::array>(frame).data()),
                     image.mutable_data());
    return image;
  }
  auto frames = as_frames(frame, /*allow_single=*/true, "frame");
  const bool single = frames.ndim() == 3;
  const int64_t n = single ? 1 : frames.shape(0);
  FloatArray images = single ? FloatArray({kImageSide, kImageSide})
                             : FloatArray({n, int64_t{kImageSide}, int64_t{kImageSide}});
  const uint8_t* in = frames.data();
  float* out = images.mutable_data();
  {
    py::gil_scoped_release release;
    preprocess_frames(in, n, out);
  }
  return images;
}

py::array_t<float> rows_to_dense(const SparseRows& rows, int64_t input_size) {
  require_positive(input_size, "input_size");
  if (rows.rows() > 0 && input_size > kMaxTensorFloats / rows.rows()) {
    fail("rows * input_size must be at most 2^28 floats, got " + std::to_string(rows.rows()) +
         " rows of input_size " + std::to_string(input_size));
  }
  for (int32_t i : rows.indices) {
    if (i >= input_size) {
      fail("input_size must exceed every stored pixel index, got " + std::to_string(input_size) +
           " with index " + std::to_string(i));
    }
  }
  FloatArray dense({rows.rows(), input_size});
  float* out = dense.mutable_data();
  std::fill(out, out + rows.rows() * input_size, 0.0f);
  for (int64_t r = 0; r < rows.rows(); ++r) {
    for (int64_t k = rows.offsets[r]; k < rows.offsets[r + 1]; ++k) {
      out[r * input_size + rows.indices[k]] = rows.values[k];
    }
  }
  return dense;
}

SparseRows rows_from_dense(const py::handle& obj) {
  FloatArray x = as_float32(obj, "x");
  if (x.ndim() != 1 && x.ndim() != 2) {
    fail("x must have shape (D,) or (N, D), got " + describe_object(obj));
  }
  const int64_t n = x.ndim() == 2 ? x.shape(0) : 1;
  const int64_t d = x.shape(x.ndim() - 1);
  if (d > INT32_MAX) fail("x rows must have at most 2^31 - 1 entries, got " + std::to_string(d));
  return sparse_rows_from_dense(x.data(), n, d, "x", "row", "column");
}

template <typename T>
py::array_t<T> copy_of(const std::vector<T>& v) {
  py::array_t<T> a(static_cast<py::ssize_t>(v.size()));
  std::copy(v.begin(), v.end(), a.mutable_data());
  return a;
}

}  // namespace

void bind_frames(py::module_& m) {
  m.def("frame_preprocessing", &preprocess, py::arg("frame"),
        "Atari frame(s) uint8 (210, 160, 3) or (N, 210, 160, 3) -> float32 (80, 80) or "
        "(N, 80, 80) in {0, 1}: crop rows 35:195, every second row and column of the red "
        "channel, background 144 and 109 erased. The input is never modified.");

  // For tests: run preprocessing through each SIMD kernel the CPU has.
  m.def("_preprocess_kernels", &preprocess_kernels,
        "The preprocessing kernels this CPU runs, best first.");
  m.def("_preprocess_kernel", &preprocess_kernel, "The preprocessing kernel in use.");
  m.def(
      "_use_preprocess_kernel",
      [](const std::string& name) {
        if (!use_preprocess_kernel(name)) {
          fail("kernel must be one of this CPU's preprocessing kernels, got '" + name + "'");
        }
      },
      py::arg("name"), "Switches preprocessing (all of it, in every thread) to that kernel.");

  py::class_<SparseRows>(m, "SparseFrames",
                         "Rows of {-1, 0, +1} network inputs stored as nonzero pixels and signs.")
      .def_static("from_dense", &rows_from_dense, py::arg("x"),
                  "From a dense (D,) or (N, D) array of -1, 0, 1.")
      .def("to_dense", &rows_to_dense, py::arg("input_size") = int64_t{kImagePixels},
           "The rows as a dense float32 (N, input_size) array.")
      .def("__len__", &SparseRows::rows)
      .def_property_readonly("nonzeros", &SparseRows::nonzeros)
      .def_property_readonly("offsets", [](const SparseRows& r) { return copy_of(r.offsets); })
      .def_property_readonly("indices", [](const SparseRows& r) { return copy_of(r.indices); })
      .def_property_readonly("values", [](const SparseRows& r) { return copy_of(r.values); })
      .def("__repr__", [](const SparseRows& r) {
        return "SparseFrames(rows=" + std::to_string(r.rows()) +
               ", nonzeros=" + std::to_string(r.nonzeros()) + ")";
      });

  py::class_<FrameDifferencer>(
      m, "FrameDifferencer",
      "Keeps each environment's previous binary frame and turns new frames into the network's "
      "input, the difference of two preprocessed frames, as SparseFrames. An environment's "
      "first frame (and the first after reset(env)) gives an all-zero row.")
      .def(py::init([](int64_t num_envs) {
             require_at_most(num_envs, kMaxEnvironments, "num_envs");
             return FrameDifferencer(num_envs);
           }),
           py::arg("num_envs"))
      .def_property_readonly("num_envs", &FrameDifferencer::num_envs)
      .def(
          "step",
          [](FrameDifferencer& self, const py::handle& frames_obj) {
            auto frames = as_frames(frames_obj, /*allow_single=*/false, "frames");
            if (frames.shape(0) != self.num_envs()) {
              fail("frames must hold one frame per environment, " +
                   std::to_string(self.num_envs()) + ", got " + describe(frames));
            }
            SparseRows out;
            const uint8_t* in = frames.data();
            {
              UseScope use(&self, "FrameDifferencer", Use::kWrite);
              py::gil_scoped_release release;
              self.step(in, out);
            }
            return out;
          },
          py::arg("frames"), "frames uint8 (num_envs, 210, 160, 3) -> SparseFrames, a row each.")
      .def(
          "reset",
          [](FrameDifferencer& self, int64_t env) {
            if (env < 0 || env >= self.num_envs()) {
              fail("env must be in [0, " + std::to_string(self.num_envs()) + "), got " +
                   std::to_string(env));
            }
            require_not_in_use(&self, "FrameDifferencer");
            self.reset(env);
          },
          py::arg("env"), "The next frame of this environment starts an episode.")
      .def("reset_all", [](FrameDifferencer& self) {
        require_not_in_use(&self, "FrameDifferencer");
        self.reset_all();
      });
}

}  // namespace fastpong::bind
