#include "worker/serving_ring.h"

#include "shm/table_ops.h"
#include "worker/backend_picker.h"

namespace wslb::worker {

std::optional<std::size_t> serving_ring::row_for(const shm::table& t, std::uint64_t key_hash) {
  std::array<member_state, shm::max_backends> now{};
  const std::size_t rows = shm::backend_rows_in_use(t);
  for (std::size_t i = 0; i < rows; ++i) {
    const shm::backend_row& r = t.backends[i];
    if (r.state.load(std::memory_order_acquire) != shm::backend_state::active) continue;
    now[i] = member_state{true, takes_new_connections(r), ring_weight(r, 1)};
  }
  if (!built_ || now != built_from_) {
    // Every active row, eligible or not, as the picker passes every configured backend: the
    // points per unit of weight depend on all of them.
    scratch_.clear();
    for (std::size_t i = 0; i < rows; ++i) {
      if (!now[i].active) continue;
      const shm::backend_row& r = t.backends[i];
      scratch_.push_back(ring_member{i, shm::address_of(r), now[i].weight, now[i].eligible});
    }
    ring_.rebuild(scratch_);
    built_from_ = now;
    built_ = true;
  }
  return ring_.lookup(key_hash);
}

}  // namespace wslb::worker
