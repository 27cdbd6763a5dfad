// Discounted returns (restarting at every point scored, as in the tutorial and the lab's Pong, or
// not, as in the lab's CartPole) and their standardization.
#pragma once
#include <cstdint>

namespace fastpong {

// out[t] = r[t] + gamma * out[t + 1]; with reset_at_points the sum restarts wherever r[t] != 0.
// Assumes valid arguments; `out` may alias `rewards`.
void discount_rewards(const float* rewards, int64_t n, double gamma, float* out,
                      bool reset_at_points = true);

// Subtracts the mean and divides by the standard deviation, in place (the tutorial's
// normalization of an episode's returns). A constant vector becomes all zeros, not NaN.
void standardize(float* values, int64_t n);

}  // namespace fastpong
