#include "fastpong/returns.hpp"

#include <cmath>

namespace fastpong {

void discount_rewards(const float* rewards, int64_t n, double gamma, float* out,
                      bool reset_at_points) {
  // Accumulated in double so that long rallies round once, like the float64 reference.
  double running = 0.0;
  for (int64_t t = n - 1; t >= 0; --t) {
    const double r = rewards[t];
    if (reset_at_points && r != 0.0) running = 0.0;  // a point ended the rally: it restarts here
    running = running * gamma + r;
    out[t] = static_cast<float>(running);
  }
}

void standardize(float* values, int64_t n) {
  if (n == 0) return;
  double sum = 0.0;
  for (int64_t t = 0; t < n; ++t) sum += values[t];
  const double mean = sum / static_cast<double>(n);
  double squares = 0.0;
  for (int64_t t = 0; t < n; ++t) squares += (values[t] - mean) * (values[t] - mean);
  const double std = std::sqrt(squares / static_cast<double>(n));
  const double scale = std > 0.0 ? 1.0 / std : 0.0;
  for (int64_t t = 0; t < n; ++t) values[t] = static_cast<float>((values[t] - mean) * scale);
}

}  // namespace fastpong
