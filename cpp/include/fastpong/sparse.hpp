// Rows of a {-1, 0, +1} matrix stored as their nonzero columns and signs (CSR layout).
#pragma once
#include <cstdint>
#include <vector>

namespace fastpong {

struct SparseRows {
  std::vector<int64_t> offsets{0};  // row r is [offsets[r], offsets[r + 1])
  std::vector<int32_t> indices;     // column of each nonzero, increasing within a row
  std::vector<int8_t> values;       // its sign, -1 or +1

  int64_t rows() const { return static_cast<int64_t>(offsets.size()) - 1; }
  int64_t nonzeros() const { return static_cast<int64_t>(indices.size()); }
  void clear() {
    offsets.assign(1, 0);
    indices.clear();
    values.clear();
  }
  // Appends row `r` of `other`.
  void append_row(const SparseRows& other, int64_t r);
};

}  // namespace fastpong
