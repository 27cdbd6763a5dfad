// Optimizer steps: Adam for the tutorial's Policy and for any policy whose parameters are numpy
// arrays, and RMSProp over such arrays (the tutorial's Policy has rmsprop_step in bind_training).
#include <pybind11/stl.h>

#include "checks.hpp"
#include "fastpong/adam.hpp"
#include "fastpong/rmsprop.hpp"
#include "use_guard.hpp"

namespace fastpong::bind {
namespace {

AdamSettings adam_settings(double learning_rate, double beta_1, double beta_2, double epsilon,
                           int64_t step) {
  require_finite_number(learning_rate, false, "learning_rate", "a positive number");
  for (const auto& [value, name] : {std::pair{beta_1, "beta_1"}, std::pair{beta_2, "beta_2"}}) {
    if (!(value >= 0.0 && value < 1.0)) {
      fail(std::string(name) + " must be in [0, 1), got " +
           py::repr(py::float_(value)).cast<std::string>());
    }
  }
  require_finite_number(epsilon, false, "epsilon", "a positive number");
  require_positive(step, "step");
  return AdamSettings{learning_rate, beta_1, beta_2, epsilon, step};
}

// Several named arrays that are stepped together: each list holds one array per name, all
// writable C-contiguous float32 of the weight's shape. Checked completely before any is written.
struct ArrayGroup {
  std::vector<std::vector<float*>> lists;  // lists[k][i]: the k-th role's array for name i
  std::vector<int64_t> sizes;
};

ArrayGroup array_group(const std::vector<std::string>& names,
                       const std::vector<std::pair<std::vector<py::handle>, std::string>>& roles) {
  ArrayGroup group;
  group.lists.resize(roles.size());
  for (const auto& [arrays, role] : roles) {
    if (arrays.size() != names.size()) {
      fail(role + " must hold " + std::to_string(names.size()) + " arrays (one per name), got " +
           std::to_string(arrays.size()));
    }
  }
  for (size_t i = 0; i < names.size(); ++i) {
    const py::handle weight = roles[0].first[i];
    if (!py::isinstance<py::array>(weight)) {
      fail(roles[0].second + "['" + names[i] + "'] must be a float32 array, got " +
           describe_object(weight));
    }
    const auto w = py::reinterpret_borrow<py::array>(weight);
    std::vector<int64_t> shape(w.shape(), w.shape() + w.ndim());
    for (size_t k = 0; k < roles.size(); ++k) {
      group.lists[k].push_back(
          writable_float32(roles[k].first[i], shape, roles[k].second + "['" + names[i] + "']"));
    }
    group.sizes.push_back(static_cast<int64_t>(w.size()));
  }
  return group;
}

// Every array of the group registered as changed for the step (by its data, as the CNN's
// parameters and gradients are): a step must not overlap a forward pass or a gradient added to
// the same arrays in another thread.
UseScopes written(const ArrayGroup& group) {
  UseScopes use;
  for (const auto& list : group.lists) {
    for (float* array : list) use.add(array, "an array of this optimizer step", Use::kWrite);
  }
  use.enter();
  return use;
}

}  // namespace

void bind_adam(py::module_& m) {
  m.def(
      "adam_step",
      [](Policy& policy, PolicyTensors& grads, PolicyTensors& m1, PolicyTensors& v,
         double learning_rate, double beta_1, double beta_2, double epsilon, int64_t step) {
        require_policy_shapes(grads.hidden, grads.input_size, policy, "grads");
        require_policy_shapes(m1.hidden, m1.input_size, policy, "m");
        require_policy_shapes(v.hidden, v.input_size, policy, "v");
        const AdamSettings settings = adam_settings(learning_rate, beta_1, beta_2, epsilon, step);
        if (&grads == &m1 || &grads == &v || &m1 == &v) {
          fail("grads, m and v must be three different GradientBuffers");
        }
        UseScope use_policy(&policy, "Policy", Use::kWrite);
        UseScope use_grads(&grads, "GradientBuffer", Use::kWrite);
        UseScope use_m(&m1, "GradientBuffer", Use::kWrite);
        UseScope use_v(&v, "GradientBuffer", Use::kWrite);
        py::gil_scoped_release release;
        adam_step(policy.weights(), grads, m1, v, settings);
      },
      py::arg("policy"), py::arg("grads"), py::arg("m"), py::arg("v"), py::arg("learning_rate"),
      py::arg("beta_1"), py::arg("beta_2"), py::arg("epsilon"), py::arg("step"),
      "Keras 3's Adam as an ascent step on the tutorial's Policy, in place: updates m, v and the "
      "weights, zeroes grads. step is t, counted from 1.");

  m.def(
      "adam_step_arrays",
      [](const std::vector<std::string>& names, const std::vector<py::handle>& weights,
         const std::vector<py::handle>& grads, const std::vector<py::handle>& m1,
         const std::vector<py::handle>& v, double learning_rate, double beta_1, double beta_2,
         double epsilon, int64_t step) {
        const AdamSettings settings = adam_settings(learning_rate, beta_1, beta_2, epsilon, step);
        const ArrayGroup g =
            array_group(names, {{weights, "weights"}, {grads, "grads"}, {m1, "m"}, {v, "v"}});
        UseScopes use = written(g);
        py::gil_scoped_release release;
        for (size_t i = 0; i < names.size(); ++i) {
          adam_step(g.lists[0][i], g.lists[1][i], g.lists[2][i], g.lists[3][i], g.sizes[i],
                    settings);
        }
      },
      py::arg("names"), py::arg("weights"), py::arg("grads"), py::arg("m"), py::arg("v"),
      py::arg("learning_rate"), py::arg("beta_1"), py::arg("beta_2"), py::arg("epsilon"),
      py::arg("step"),
      "adam_step over lists of float32 arrays, one per name (all checked before any is written).");

  m.def(
      "rmsprop_step_arrays",
      [](const std::vector<std::string>& names, const std::vector<py::handle>& weights,
         const std::vector<py::handle>& grads, const std::vector<py::handle>& cache,
         double learning_rate, double decay_rate) {
        require_finite_number(learning_rate, false, "learning_rate", "a positive number");
        if (!(decay_rate >= 0.0 && decay_rate < 1.0)) {
          fail("decay_rate must be in [0, 1), got " + std::to_string(decay_rate));
        }
        const ArrayGroup g =
            array_group(names, {{weights, "weights"}, {grads, "grads"}, {cache, "cache"}});
        UseScopes use = written(g);
        py::gil_scoped_release release;
        for (size_t i = 0; i < names.size(); ++i) {
          rmsprop_step(g.lists[0][i], g.lists[1][i], g.lists[2][i], g.sizes[i],
                       static_cast<float>(learning_rate), decay_rate);
        }
      },
      py::arg("names"), py::arg("weights"), py::arg("grads"), py::arg("cache"),
      py::arg("learning_rate"), py::arg("decay_rate"),
      "The tutorial's RMSProp ascent step over lists of float32 arrays, one per name.");
}

}  // namespace fastpong::bind
