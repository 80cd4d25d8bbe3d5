#include "worker/admission.h"

#include <atomic>

#include "shm/cluster_view.h"
#include "shm/table_ops.h"

namespace wslb::worker {

bool reserve_place(shm::table& t, shm::worker_row& self, std::size_t backend,
                   std::uint32_t maxconn) {
  std::atomic<std::uint64_t>& mine = self.backends[backend].active;
  if (maxconn == 0) {
    mine.store(mine.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    return true;
  }
  const auto tag = static_cast<std::uint32_t>(backend + 1);
  self.reserving.store(tag, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  // Reservations first, with acquire: a worker whose reservation reads as released has its
  // new live count visible to the sum below.
  std::uint64_t taken = 1;  // ours
  const std::size_t rows = shm::worker_rows_in_use(t);
  for (std::size_t s = 0; s < rows; ++s) {
    const shm::worker_row& w = t.workers[s];
    if (&w != &self && w.reserving.load(std::memory_order_acquire) == tag) ++taken;
  }
  // The other nodes' counts are as old as the cluster agent's last round: places they took
  // since are not seen here, so a tier may pass maxconn by what arrived elsewhere within one
  // interval (README, "maxconn in a tier").
  taken += shm::tier_active(t, backend);
  const bool admitted = taken <= maxconn;
  if (admitted) mine.store(mine.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  self.reserving.store(0, std::memory_order_release);
  return admitted;
}

std::uint64_t ramped_weight_milli(std::uint32_t weight, std::int64_t up_since_ms,
                                  std::uint32_t slowstart_ms, std::int64_t now_ms) {
  const std::uint64_t full = std::uint64_t{weight} * 1000;
  if (slowstart_ms == 0 || up_since_ms <= 0 || now_ms >= up_since_ms + slowstart_ms) return full;
  const std::uint64_t elapsed = now_ms > up_since_ms ? static_cast<std::uint64_t>(now_ms - up_since_ms) : 0;
  const std::uint64_t ramped = full * elapsed / slowstart_ms;
  return ramped == 0 ? 1 : ramped;
}

}  // namespace wslb::worker
