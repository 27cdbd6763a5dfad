// Discounted returns that restart at every point scored, as in the tutorial.
#pragma once
#include <cstdint>

namespace fastpong {

// out[t] = r[t] + gamma * out[t + 1], except that the sum restarts wherever r[t] != 0.
// Assumes valid arguments; `out` may alias `rewards`.
void discount_rewards(const float* rewards, int64_t n, double gamma, float* out);

// Subtracts the mean and divides by the standard deviation, in place (the tutorial's
// normalization of an episode's returns). A constant vector becomes all zeros, not NaN.
void standardize(float* values, int64_t n);

}  // namespace fastpong
