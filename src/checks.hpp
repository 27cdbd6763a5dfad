// Validation shared by the bindings: every bound function checks its arguments with these while
// holding the GIL, then calls a core function that assumes valid arguments (releasing the GIL for
// it unless it takes only microseconds; see ReleaseGilIf).
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "fastpong/policy.hpp"
#include "fastpong/sparse.hpp"

namespace fastpong::bind {

namespace py = pybind11;

// A contiguous float32 array owned by numpy, filled by the core.
using FloatArray = py::array_t<float, py::array::c_style>;

// "float64 (84, 84)": how an array that came in is described in error messages.
inline std::string describe(const py::array& a) {
  std::string s = py::str(a.dtype()).cast<std::string>() + " (";
  for (py::ssize_t d = 0; d < a.ndim(); ++d) {
    s += std::to_string(a.shape(d));
    if (a.ndim() == 1 || d + 1 < a.ndim()) s += d + 1 < a.ndim() ? ", " : ",";
  }
  return s + ")";
}

// "an object of type list of shape (3,)": a list or tuple that numpy reads as an array gets its
// shape too, so a shape error says what came.
inline std::string describe_object(const py::handle& obj) {
  if (py::isinstance<py::array>(obj)) return describe(py::reinterpret_borrow<py::array>(obj));
  std::string s =
      "an object of type " + py::str(py::type::of(obj).attr("__name__")).cast<std::string>();
  const py::array a = py::array::ensure(obj);  // null (error cleared) when numpy cannot read it
  if (a && a.ndim() > 0) {
    const std::string d = describe(a);
    s += " of shape " + d.substr(d.find('('));
  }
  return s;
}

[[noreturn]] inline void fail(const std::string& message) { throw py::value_error(message); }

// Releases the GIL for the scope when `release` is true. Calls of a few microseconds keep it:
// dropping and re-taking it costs a few percent of such a call, and once another Python thread
// has taken it, getting it back can take that thread's whole switch interval (5 ms).
class ReleaseGilIf {
 public:
  explicit ReleaseGilIf(bool release) {
    if (release) state_ = PyEval_SaveThread();
  }
  ~ReleaseGilIf() {
    if (state_ != nullptr) PyEval_RestoreThread(state_);
  }
  ReleaseGilIf(const ReleaseGilIf&) = delete;
  ReleaseGilIf& operator=(const ReleaseGilIf&) = delete;

 private:
  PyThreadState* state_ = nullptr;
};

// Any real numeric array-like as C-contiguous float32 (a copy only where needed). Booleans,
// complex numbers, strings and objects are refused rather than guessed at.
inline FloatArray as_float32(const py::handle& obj, const std::string& name) {
  py::array a;
  try {
    a = py::array::ensure(obj);
  } catch (...) {
  }
  if (!a) fail(name + " must be a numeric array, got " + describe_object(obj));
  const char kind = a.dtype().kind();
  if (kind != 'f' && kind != 'i' && kind != 'u') {
    fail(name + " must be a real numeric array (float32 preferred), got " + describe(a));
  }
  // forcecast: float64 and integer inputs are converted, not refused (kinds checked above).
  // aligned: a float32 view at an odd byte offset is copied too. The kernels read floats through
  // float pointers, which C++ requires to be 4-byte aligned (the sanitizer build caught one).
  constexpr int kFlags =
      py::array::c_style | py::array::forcecast | py::detail::npy_api::NPY_ARRAY_ALIGNED_;
  auto converted = py::array_t<float, kFlags>::ensure(a);
  if (!converted) fail(name + " could not be converted to float32, got " + describe(a));
  return converted;
}

// The error for data[i], the first NaN or infinity of an array.
[[noreturn]] inline void fail_not_finite(const float* data, int64_t i, const std::string& name) {
  fail(name + " must be finite, got " + std::to_string(data[i]) + " at flat index " +
       std::to_string(i));
}

// Checked a block at a time with integer operations the compiler vectorizes (a float is NaN or
// infinite exactly when its exponent bits are all ones); only a block with one is looked into.
inline void require_finite(const float* data, int64_t n, const std::string& name) {
  constexpr int64_t kBlock = 256;
  constexpr uint32_t kExponent = 0x7f800000u;
  for (int64_t i0 = 0; i0 < n; i0 += kBlock) {
    const int64_t end = std::min(n, i0 + kBlock);
    uint32_t any = 0;
#pragma omp simd reduction(| : any)
    for (int64_t i = i0; i < end; ++i) {
      uint32_t bits;
      std::memcpy(&bits, data + i, sizeof bits);
      any |= static_cast<uint32_t>((bits & kExponent) == kExponent);
    }
    if (any == 0) continue;
    for (int64_t i = i0; i < end; ++i) {
      if (!std::isfinite(data[i])) fail_not_finite(data, i, name);
    }
  }
}

// "(200, 6400)"
inline std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t d = 0; d < shape.size(); ++d) {
    s += std::to_string(shape[d]);
    if (shape.size() == 1 || d + 1 < shape.size()) s += d + 1 < shape.size() ? ", " : ",";
  }
  return s + ")";
}

inline bool has_shape(const py::array& a, const std::vector<int64_t>& shape) {
  if (a.ndim() != static_cast<py::ssize_t>(shape.size())) return false;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (a.shape(static_cast<py::ssize_t>(d)) != shape[d]) return false;
  }
  return true;
}

// `original` is what the caller passed, so the message names its dtype, not the converted one.
inline void require_shape(const py::array& a, const std::vector<int64_t>& shape,
                          const std::string& name, const py::handle& original = py::handle()) {
  if (!has_shape(a, shape)) {
    fail(name + " must have shape " + shape_text(shape) + ", got " +
         (original ? describe_object(original) : describe(a)));
  }
}

// A caller-owned output or state array the core writes in place: it must already be a writable,
// C-contiguous float32 array of the given shape, since a converted copy would take the writes.
inline float* writable_float32(const py::handle& obj, const std::vector<int64_t>& shape,
                               const std::string& name) {
  const std::string expected =
      name + " must be a writable C-contiguous float32 array of shape " + shape_text(shape);
  if (!py::isinstance<py::array>(obj)) fail(expected + ", got " + describe_object(obj));
  auto a = py::reinterpret_borrow<py::array>(obj);
  if (!a.dtype().is(py::dtype::of<float>()) || !has_shape(a, shape)) {
    fail(expected + ", got " + describe(a));
  }
  if (!(a.flags() & py::array::c_style)) fail(expected + ", got a non-contiguous view");
  if (!a.writeable()) fail(expected + ", got a read-only array");
  // The kernels write floats through float pointers, which must be 4-byte aligned (see as_float32).
  if (!(a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_)) {
    fail(expected + ", got a misaligned view");
  }
  return static_cast<float*>(a.mutable_data());
}

// A learning rate, beta or epsilon: finite in float32, and above (or at) zero as asked.
inline void require_finite_number(double value, bool allow_zero, const std::string& name,
                                  const std::string& expected) {
  const bool finite = std::isfinite(static_cast<float>(value));
  if (!finite || value < 0.0 || (!allow_zero && value == 0.0)) {
    fail(name + " must be " + expected + ", got " +
         py::repr(py::float_(value)).cast<std::string>());
  }
}

inline void require_positive(int64_t value, const std::string& name) {
  if (value <= 0) fail(name + " must be a positive integer, got " + std::to_string(value));
}

// Sizes past these are mistakes, not requests. Refusing them keeps products such as
// hidden * input_size far from int64 overflow, and makes an impossible allocation a ValueError
// up front rather than a MemoryError (or an overflowed size) later. Found by the boundary fuzzer.
constexpr int64_t kMaxTensorFloats = int64_t{1} << 28;  // 1 GiB of float32, 200x the tutorial's net
constexpr int64_t kMaxEnvironments = int64_t{1} << 16;

inline void require_at_most(int64_t value, int64_t limit, const std::string& name) {
  require_positive(value, name);
  if (value > limit) {
    fail(name + " must be at most " + std::to_string(limit) + ", got " + std::to_string(value));
  }
}

// hidden and input_size of weight-shaped tensors (and of what must fit them): both positive,
// their product at most kMaxTensorFloats.
inline void require_tensor_shape(int64_t hidden, int64_t input_size) {
  require_positive(hidden, "hidden");
  require_positive(input_size, "input_size");
  if (hidden > kMaxTensorFloats / input_size) {
    fail("hidden * input_size must be at most 2^28 floats, got hidden=" + std::to_string(hidden) +
         ", input_size=" + std::to_string(input_size));
  }
}

// Tensors or an episode of (hidden, input_size) must fit the policy they are used with.
inline void require_policy_shapes(int64_t hidden, int64_t input_size, const Policy& policy,
                                  const std::string& name) {
  if (input_size != policy.input_size() || hidden != policy.hidden()) {
    fail(name + " must match the policy's shapes (hidden=" + std::to_string(policy.hidden()) +
         ", input_size=" + std::to_string(policy.input_size()) + "), got hidden=" +
         std::to_string(hidden) + ", input_size=" + std::to_string(input_size));
  }
}

inline void require_indices_below(const SparseRows& rows, int64_t input_size,
                                  const std::string& name) {
  for (int32_t i : rows.indices) {
    if (i < 0 || i >= input_size) {
      fail(name + " pixel indices must be in [0, " + std::to_string(input_size) + "), got " +
           std::to_string(i));
    }
  }
}

// `rows` dense rows of `columns` floats, all -1, 0 or 1, as SparseRows. A bad value is reported
// as "<name> ... at <row_word> r, <column_word> c" (row/column for inputs, step/pixel for episodes).
inline SparseRows sparse_rows_from_dense(const float* data, int64_t rows, int64_t columns,
                                         const std::string& name, const char* row_word,
                                         const char* column_word) {
  SparseRows sparse;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < columns; ++i) {
      const float v = data[r * columns + i];
      if (v == 0.0f) continue;
      if (v != 1.0f && v != -1.0f) {
        fail(name + " must hold only -1, 0 and 1 (differences of binary frames), got " +
             std::to_string(v) + " at " + row_word + " " + std::to_string(r) + ", " + column_word +
             " " + std::to_string(i));
      }
      sparse.indices.push_back(static_cast<int32_t>(i));
      sparse.values.push_back(static_cast<int8_t>(v));
    }
    sparse.offsets.push_back(sparse.nonzeros());
  }
  return sparse;
}

}  // namespace fastpong::bind
