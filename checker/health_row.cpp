#include "checker/health_row.h"

#include "shm/table_ops.h"

namespace wslb::checker {

std::optional<transition> record_check(shm::backend_row& row, probe_status status,
                                       std::string_view error, std::uint32_t rise,
                                       std::uint32_t fall, std::int64_t finished_unix_ms) {
  std::optional<transition> flipped;
  // A worker's passive mark stores healthy = 0 first and check_streak = 0 second. Swapping the
  // streak first and then the health against the values this step was computed from means a
  // mark that lands in between makes one of the swaps fail, and the step is recomputed from what
  // the worker wrote. Only workers compete here and they only ever lower `healthy`, so a few
  // rounds always settle; the bound is a guard, not an expected path.
  for (int attempt = 0; attempt < 16; ++attempt) {
    std::uint32_t healthy_now = row.healthy.load(std::memory_order_acquire);
    std::int32_t streak_now = row.check_streak.load(std::memory_order_acquire);
    const health_step step =
        next_health(health{healthy_now != 0, streak_now}, status, error, rise, fall);
    if (!row.check_streak.compare_exchange_strong(streak_now, step.next.streak,
                                                  std::memory_order_acq_rel)) {
      continue;
    }
    if (step.changed) {
      const std::uint32_t want = step.next.healthy ? 1u : 0u;
      // The slow-start ramp begins now; written before `healthy` so that no worker sees the
      // backend up with the start of an earlier ramp (a harmless write if the swap fails).
      if (step.next.healthy) row.up_since_ms.store(finished_unix_ms, std::memory_order_release);
      if (!row.healthy.compare_exchange_strong(healthy_now, want, std::memory_order_acq_rel)) {
        continue;
      }
      if (step.next.healthy) row.passive_fail_streak.store(0, std::memory_order_relaxed);
      row.transitions.fetch_add(1, std::memory_order_relaxed);
      flipped = step.changed;
    }
    break;
  }
  row.last_result.store(status == probe_status::ok ? shm::check_result::ok
                                                   : shm::check_result::failed,
                        std::memory_order_relaxed);
  if (status != probe_status::ok) shm::write_last_error(row, error);
  row.last_check_ms.store(finished_unix_ms, std::memory_order_release);
  return flipped;
}

}  // namespace wslb::checker
