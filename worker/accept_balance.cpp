#include "worker/accept_balance.h"

#include "shm/table_ops.h"

#include <algorithm>

namespace wslb::worker {

namespace {

constexpr auto relaxed = std::memory_order_relaxed;

// Calls `visit(row)` for every running worker of `generation` other than `slot`.
template <typename Visit>
void for_each_peer(const shm::table& t, std::size_t slot, std::uint32_t generation,
                   Visit&& visit) {
  const std::size_t rows = shm::worker_rows_in_use(t);
  for (std::size_t s = 0; s < rows; ++s) {
    if (s == slot) continue;
    const shm::worker_row& row = t.workers[s];
    if (row.state.load(relaxed) == shm::worker_state::running &&
        row.generation.load(relaxed) == generation) {
      visit(row);
    }
  }
}

}  // namespace

accept_standing standing_against(std::uint64_t mine, std::uint64_t least) {
  // A couple of connections apart is noise, not load.
  if (mine * 4 > least * 5 + 8 * 4) return accept_standing::far_ahead;
  if (mine * 8 > least * 9 + 2 * 8) return accept_standing::ahead;
  return accept_standing::even;
}

std::optional<std::uint64_t> least_peer_connections(const shm::table& t, std::size_t slot,
                                                    std::uint32_t generation) {
  std::optional<std::uint64_t> least;
  for_each_peer(t, slot, generation, [&](const shm::worker_row& row) {
    const std::uint64_t live = row.connections.load(relaxed);
    if (!least || live < *least) least = live;
  });
  return least;
}

std::uint64_t peers_accepted(const shm::table& t, std::size_t slot, std::uint32_t generation) {
  std::uint64_t sum = 0;
  for_each_peer(t, slot, generation,
                [&](const shm::worker_row& row) { sum += row.accepted.load(relaxed); });
  return sum;
}

}  // namespace wslb::worker
