#include "bench/histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace wslb::bench {

// Values below 2^sub_bits get one bucket each; above, each power of two [2^p, 2^(p+1)) is
// split into 2^sub_bits equal buckets by the bits just below the leading one.
unsigned histogram::bucket_of(std::uint64_t ns) {
  if (ns < (1u << sub_bits)) return static_cast<unsigned>(ns);
  const unsigned p = static_cast<unsigned>(std::bit_width(ns)) - 1;  // ns in [2^p, 2^(p+1))
  if (p >= powers) return buckets - 1;
  const unsigned sub = static_cast<unsigned>((ns >> (p - sub_bits)) & ((1u << sub_bits) - 1));
  return ((p - sub_bits + 1) << sub_bits) + sub;
}

std::uint64_t histogram::upper_edge(unsigned bucket) {
  if (bucket < (1u << sub_bits)) return bucket;
  const unsigned p = (bucket >> sub_bits) + sub_bits - 1;
  const std::uint64_t sub = bucket & ((1u << sub_bits) - 1);
  return (std::uint64_t{1} << p) + ((sub + 1) << (p - sub_bits)) - 1;
}

void histogram::record(std::uint64_t ns) {
  ++counts_[bucket_of(ns)];
  ++count_;
  sum_ += ns;
  max_ = std::max(max_, ns);
}

void histogram::merge(const histogram& other) {
  for (unsigned i = 0; i < buckets; ++i) counts_[i] += other.counts_[i];
  count_ += other.count_;
  sum_ += other.sum_;
  max_ = std::max(max_, other.max_);
}

std::uint64_t histogram::quantile(double q) const {
  if (count_ == 0) return 0;
  const auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(count_)));
  std::uint64_t seen = 0;
  for (unsigned i = 0; i < buckets; ++i) {
    seen += counts_[i];
    if (seen >= std::max<std::uint64_t>(rank, 1)) return std::min(upper_edge(i), max_);
  }
  return max_;
}

}  // namespace wslb::bench
