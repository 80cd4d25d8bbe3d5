// Updating the counters of the worker's own table row. Only this worker writes its row, so a
// relaxed load and store is enough: no locked read-modify-write, no contention between
// processes. Readers (other workers' pickers, `wslb status`) sum the rows.
#pragma once

#include <atomic>
#include <cstdint>

namespace wslb::worker {

inline void counter_add(std::atomic<std::uint64_t>& c, std::uint64_t d) {
  c.store(c.load(std::memory_order_relaxed) + d, std::memory_order_relaxed);
}

// Never goes below zero: a stale double decrement must not wrap into a huge count.
inline void counter_sub(std::atomic<std::uint64_t>& c, std::uint64_t d) {
  const std::uint64_t v = c.load(std::memory_order_relaxed);
  c.store(v >= d ? v - d : 0, std::memory_order_relaxed);
}

}  // namespace wslb::worker
