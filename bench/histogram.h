// A fixed-size log-linear latency histogram (about 3% resolution, 1 ns to ~18 minutes) for
// the load generator: recording is two shifts and an increment, merging is adding arrays, and
// the whole thing is plain data so a forked load-generator process can send it to its parent
// through a pipe as bytes.
#pragma once

#include <array>
#include <cstdint>

namespace wslb::bench {

class histogram {
 public:
  static constexpr unsigned sub_bits = 5;  // 32 sub-buckets per power of two
  static constexpr unsigned powers = 40;   // up to 2^40 ns

  void record(std::uint64_t ns);
  void merge(const histogram& other);
  std::uint64_t count() const { return count_; }
  // The value at quantile q (0..1), in nanoseconds; the upper edge of its bucket. 0 when empty.
  std::uint64_t quantile(double q) const;
  std::uint64_t max() const { return max_; }
  double mean() const { return count_ == 0 ? 0.0 : static_cast<double>(sum_) / static_cast<double>(count_); }

 private:
  static constexpr unsigned buckets = powers << sub_bits;
  static unsigned bucket_of(std::uint64_t ns);
  static std::uint64_t upper_edge(unsigned bucket);

  std::array<std::uint64_t, buckets> counts_{};
  std::uint64_t count_ = 0;
  std::uint64_t sum_ = 0;
  std::uint64_t max_ = 0;
};

}  // namespace wslb::bench
