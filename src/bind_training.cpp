// Training-time kernels: discounted returns, episode buffers, the RMSProp step.
#include "checks.hpp"
#include "fastpong/episode.hpp"
#include "fastpong/policy.hpp"
#include "fastpong/returns.hpp"
#include "fastpong/rmsprop.hpp"
#include "use_guard.hpp"

namespace fastpong::bind {
namespace {

FloatArray as_vector(const py::handle& obj, const std::string& name) {
  FloatArray a = as_float32(obj, name);
  // The tutorial keeps rewards as a (T, 1) column; accept it as well as (T,).
  if (a.ndim() == 2 && a.shape(1) == 1) a = as_float32(a.reshape({a.shape(0)}), name);
  if (a.ndim() != 1) fail(name + " must have shape (T,) or (T, 1), got " + describe_object(obj));
  require_finite(a.data(), a.size(), name);
  return a;
}

FloatArray discount(const py::handle& rewards_obj, double gamma, bool reset_at_points) {
  if (!(gamma > 0.0 && gamma <= 1.0)) {
    fail("gamma must be in (0, 1], got " + py::repr(py::float_(gamma)).cast<std::string>());
  }
  FloatArray rewards = as_vector(rewards_obj, "r");
  const int64_t n = rewards.shape(0);
  FloatArray out(n);
  const float* in = rewards.data();
  float* result = out.mutable_data();
  py::gil_scoped_release release;
  discount_rewards(in, n, gamma, result, reset_at_points);
  return out;
}

FloatArray standardized(const py::handle& values_obj) {
  FloatArray values = as_vector(values_obj, "values");
  const int64_t n = values.shape(0);
  FloatArray out(n);
  std::copy(values.data(), values.data() + n, out.mutable_data());
  standardize(out.mutable_data(), n);
  return out;
}

// One step's (or one row per environment's) hidden activations, checked against the shapes.
FloatArray as_hidden(const py::handle& obj, int64_t rows, int64_t hidden, bool single) {
  FloatArray h = as_float32(obj, "h");
  if (single) {
    require_shape(h, {hidden}, "h", obj);
  } else {
    require_shape(h, {rows, hidden}, "h", obj);
  }
  require_finite(h.data(), h.size(), "h");
  return h;
}

void check_inputs(const SparseRows& x, int64_t rows, int64_t input_size) {
  if (x.rows() != rows) {
    fail("x must have " + std::to_string(rows) + " row(s), got " + std::to_string(x.rows()));
  }
  require_indices_below(x, input_size, "x");
}

EpisodeBuffer episode_from_arrays(const py::handle& epx_obj, const py::handle& eph_obj,
                                  const py::handle& epdlogp_obj, const py::handle& rewards_obj) {
  FloatArray epx = as_float32(epx_obj, "epx");
  FloatArray eph = as_float32(eph_obj, "eph");
  if (epx.ndim() != 2) fail("epx must have shape (T, D), got " + describe_object(epx_obj));
  if (eph.ndim() != 2) fail("eph must have shape (T, H), got " + describe_object(eph_obj));
  const int64_t steps = epx.shape(0), input_size = epx.shape(1), hidden = eph.shape(1);
  require_positive(input_size, "epx's second dimension");
  require_positive(hidden, "eph's second dimension");
  if (input_size > INT32_MAX) fail("epx rows must have at most 2^31 - 1 entries");
  require_shape(eph, {steps, hidden}, "eph", eph_obj);
  FloatArray dlogps = as_vector(epdlogp_obj, "epdlogp");
  FloatArray rewards = as_vector(rewards_obj, "rewards");
  require_shape(dlogps, {steps}, "epdlogp", epdlogp_obj);
  require_shape(rewards, {steps}, "rewards", rewards_obj);
  require_finite(eph.data(), eph.size(), "eph");
  const SparseRows x =
      sparse_rows_from_dense(epx.data(), steps, input_size, "epx", "step", "pixel");
  EpisodeBuffer episode(input_size, hidden);
  for (int64_t t = 0; t < steps; ++t) {
    episode.append(x, t, eph.data() + t * hidden, dlogps.data()[t]);
    episode.set_last_reward(rewards.data()[t]);
  }
  return episode;
}

// EpisodeBatch's calls change every environment's episode; one of them may be another thread's.
void require_batch_not_in_use(EpisodeBatch& batch) {
  if (objects_in_use().empty()) return;
  for (int64_t e = 0; e < batch.num_envs(); ++e) {
    require_not_in_use(&batch.episode(e), "EpisodeBatch's episode");
  }
}

}  // namespace

void bind_training(py::module_& m) {
  m.def("discount_rewards", &discount, py::arg("r"), py::arg("gamma"),
        py::arg("reset_at_points") = true,
        "Discounted returns, float32. With reset_at_points (the default; the tutorial's Pong) the "
        "sum restarts at every nonzero reward; without it (the lab's CartPole) it runs through.");
  m.def("standardize", &standardized, py::arg("values"),
        "(values - mean) / std as float32; all zeros when std is 0 (the tutorial would give NaN).");

  py::class_<EpisodeBuffer>(
      m, "EpisodeBuffer",
      "One episode as the backward pass needs it: each step's input as nonzero pixels and signs, "
      "its hidden activations, dlogp = y - p, and the reward that followed.")
      .def(py::init([](int64_t hidden, int64_t input_size) {
             require_tensor_shape(hidden, input_size);
             return EpisodeBuffer(input_size, hidden);
           }),
           py::arg("hidden") = 200, py::arg("input_size") = 6400)
      .def_static("from_arrays", &episode_from_arrays, py::arg("epx"), py::arg("eph"),
                  py::arg("epdlogp"), py::arg("rewards"),
                  "From the tutorial's stacked arrays (epx of -1, 0, 1).")
      .def(
          "append",
          [](EpisodeBuffer& self, const SparseRows& x, const py::handle& h_obj, double dlogp) {
            check_inputs(x, 1, self.input_size());
            FloatArray h = as_hidden(h_obj, 1, self.hidden(), /*single=*/true);
            require_not_in_use(&self, "EpisodeBuffer");
            // Checked as stored, in float32: 1e300 is finite in double but inf in float32.
            if (!std::isfinite(static_cast<float>(dlogp))) {
              fail("dlogp must be finite in float32, got " +
                   py::repr(py::float_(dlogp)).cast<std::string>());
            }
            self.append(x, 0, h.data(), static_cast<float>(dlogp));
          },
          py::arg("x"), py::arg("h"), py::arg("dlogp"),
          "Appends a step: x a one-row SparseFrames, h (H,), dlogp = y - p. Reward starts at 0.")
      .def(
          "set_last_reward",
          [](EpisodeBuffer& self, double reward) {
            if (self.steps() == 0) fail("set_last_reward needs a step first, the episode is empty");
            require_not_in_use(&self, "EpisodeBuffer");
            if (!std::isfinite(static_cast<float>(reward))) {
              fail("reward must be finite in float32, got " +
                   py::repr(py::float_(reward)).cast<std::string>());
            }
            self.set_last_reward(static_cast<float>(reward));
          },
          py::arg("reward"))
      .def("clear",
           [](EpisodeBuffer& self) {
             require_not_in_use(&self, "EpisodeBuffer");
             self.clear();
           })
      .def("__len__", &EpisodeBuffer::steps)
      .def_property_readonly("hidden", &EpisodeBuffer::hidden)
      .def_property_readonly("input_size", &EpisodeBuffer::input_size)
      .def_property_readonly("nbytes", &EpisodeBuffer::nbytes,
                             "Bytes held by the stored steps.")
      .def_property_readonly("inputs", [](const EpisodeBuffer& e) { return e.inputs(); })
      .def_property_readonly("rewards",
                             [](const EpisodeBuffer& e) {
                               FloatArray a(e.steps());
                               std::copy(e.rewards().begin(), e.rewards().end(), a.mutable_data());
                               return a;
                             })
      .def_property_readonly("dlogps",
                             [](const EpisodeBuffer& e) {
                               FloatArray a(e.steps());
                               std::copy(e.dlogps().begin(), e.dlogps().end(), a.mutable_data());
                               return a;
                             })
      .def_property_readonly("hidden_states", [](const EpisodeBuffer& e) {
        FloatArray a({e.steps(), e.hidden()});
        std::copy(e.hidden_states().begin(), e.hidden_states().end(), a.mutable_data());
        return a;
      });

  py::class_<EpisodeBatch>(m, "EpisodeBatch",
                           "One EpisodeBuffer per environment, filled a step at a time.")
      .def(py::init([](int64_t num_envs, int64_t hidden, int64_t input_size) {
             require_at_most(num_envs, kMaxEnvironments, "num_envs");
             require_tensor_shape(hidden, input_size);
             return EpisodeBatch(num_envs, input_size, hidden);
           }),
           py::arg("num_envs"), py::arg("hidden") = 200, py::arg("input_size") = 6400)
      .def("__len__", &EpisodeBatch::num_envs)
      .def(
          "append",
          [](EpisodeBatch& self, const SparseRows& x, const py::handle& h_obj,
             const py::handle& dlogps_obj) {
            const int64_t n = self.num_envs();
            const EpisodeBuffer& first = self.episode(0);
            check_inputs(x, n, first.input_size());
            FloatArray h = as_hidden(h_obj, n, first.hidden(), /*single=*/false);
            FloatArray dlogps = as_vector(dlogps_obj, "dlogps");
            require_shape(dlogps, {n}, "dlogps", dlogps_obj);
            require_batch_not_in_use(self);
            self.append(x, h.data(), dlogps.data());
          },
          py::arg("x"), py::arg("h"), py::arg("dlogps"),
          "Appends a step to every environment's episode: x SparseFrames of num_envs rows, "
          "h (num_envs, H), dlogps (num_envs,).")
      .def(
          "set_last_rewards",
          [](EpisodeBatch& self, const py::handle& rewards_obj) {
            FloatArray rewards = as_vector(rewards_obj, "rewards");
            require_shape(rewards, {self.num_envs()}, "rewards", rewards_obj);
            for (int64_t e = 0; e < self.num_envs(); ++e) {
              if (self.episode(e).steps() == 0) {
                fail("set_last_rewards needs a step first, episode " + std::to_string(e) +
                     " is empty");
              }
            }
            require_batch_not_in_use(self);
            self.set_last_rewards(rewards.data());
          },
          py::arg("rewards"))
      .def(
          "episode",
          [](EpisodeBatch& self, int64_t env) -> EpisodeBuffer& {
            if (env < 0 || env >= self.num_envs()) {
              fail("env must be in [0, " + std::to_string(self.num_envs()) + "), got " +
                   std::to_string(env));
            }
            return self.episode(env);
          },
          py::arg("env"), py::return_value_policy::reference_internal);

  m.def(
      "rmsprop_step",
      [](Policy& policy, PolicyTensors& grads, PolicyTensors& cache, double learning_rate,
         double decay_rate) {
        require_policy_shapes(grads.hidden, grads.input_size, policy, "grads");
        require_policy_shapes(cache.hidden, cache.input_size, policy, "cache");
        if (!(learning_rate > 0.0) || !std::isfinite(static_cast<float>(learning_rate))) {
          fail("learning_rate must be a positive number, got " + std::to_string(learning_rate));
        }
        if (!(decay_rate >= 0.0 && decay_rate < 1.0)) {
          fail("decay_rate must be in [0, 1), got " + std::to_string(decay_rate));
        }
        if (&grads == &cache) fail("grads and cache must be two different GradientBuffers");
        UseScope use_policy(&policy, "Policy", Use::kWrite);
        UseScope use_grads(&grads, "GradientBuffer", Use::kWrite);
        UseScope use_cache(&cache, "GradientBuffer", Use::kWrite);
        py::gil_scoped_release release;
        rmsprop_step(policy.weights(), grads, cache, static_cast<float>(learning_rate),
                     decay_rate);
      },
      py::arg("policy"), py::arg("grads"), py::arg("cache"), py::arg("learning_rate"),
      py::arg("decay_rate"),
      "The tutorial's RMSProp ascent step in place: updates cache and weights, zeroes grads.");

  m.def(
      "rmsprop_step_model",
      [](Policy& policy, const py::handle& grad_w1_obj, const py::handle& grad_w2_obj,
         PolicyTensors& cache, double learning_rate, double decay_rate) {
        const int64_t hidden = policy.hidden(), input_size = policy.input_size();
        float* grad_w1 = writable_float32(grad_w1_obj, {hidden, input_size}, "grads['W1']");
        float* grad_w2 = writable_float32(grad_w2_obj, {hidden}, "grads['W2']");
        require_policy_shapes(cache.hidden, cache.input_size, policy, "cache");
        if (!(learning_rate > 0.0) || !std::isfinite(static_cast<float>(learning_rate))) {
          fail("learning_rate must be a positive number, got " + std::to_string(learning_rate));
        }
        if (!(decay_rate >= 0.0 && decay_rate < 1.0)) {
          fail("decay_rate must be in [0, 1), got " + std::to_string(decay_rate));
        }
        require_finite(grad_w1, hidden * input_size, "grads['W1']");
        require_finite(grad_w2, hidden, "grads['W2']");
        UseScope use_policy(&policy, "Policy", Use::kWrite);
        UseScope use_cache(&cache, "GradientBuffer", Use::kWrite);
        py::gil_scoped_release release;
        rmsprop_step_transposed(policy.weights(), grad_w1, grad_w2, cache,
                                static_cast<float>(learning_rate), decay_rate);
      },
      py::arg("policy"), py::arg("grad_w1"), py::arg("grad_w2"), py::arg("cache"),
      py::arg("learning_rate"), py::arg("decay_rate"),
      "rmsprop_step with the gradient as the tutorial's float32 W1 (H, D) and W2 (H,) arrays, "
      "zeroed by the step.");
}

}  // namespace fastpong::bind
