#include "worker/passive_health.h"

#include "shm/table_ops.h"

namespace wslb::worker {

bool note_connect_failure(shm::backend_row& row, std::uint32_t fall, std::string_view reason,
                          std::string& reason_out) {
  const std::uint32_t streak =
      row.passive_fail_streak.fetch_add(1, std::memory_order_relaxed) + 1;
  if (fall == 0 || streak < fall) return false;
  std::uint32_t up = 1;
  // Several workers may reach `fall` at once; the compare-and-swap lets exactly one of them
  // record the transition.
  if (!row.healthy.compare_exchange_strong(up, 0, std::memory_order_acq_rel)) return false;
  row.check_streak.store(0, std::memory_order_relaxed);
  reason_out = "passive: " + std::to_string(streak) + " connect failures in a row (last: " +
               std::string(reason) + ")";
  shm::write_last_error(row, reason_out);
  row.transitions.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void note_connect_success(shm::backend_row& row) {
  // Most connects succeed: read first so that the common case writes nothing to a cache line
  // every worker reads.
  if (row.passive_fail_streak.load(std::memory_order_relaxed) != 0) {
    row.passive_fail_streak.store(0, std::memory_order_relaxed);
  }
}

}  // namespace wslb::worker
