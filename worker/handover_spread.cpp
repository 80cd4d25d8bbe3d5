#include "worker/handover_spread.h"

#include <algorithm>

namespace wslb::worker {

namespace {

constexpr auto relaxed = std::memory_order_relaxed;

// In 1/all_moving of a tunnel.
std::uint64_t weighted(const receiver_load& r, std::uint64_t mine, std::uint64_t all_moving) {
  return r.own * mine + r.sent * all_moving;
}

}  // namespace

std::uint64_t moving_in_all(const shm::table& t, std::uint32_t newest) {
  std::uint64_t held = 0, sent = 0, taken_in = 0;
  for (std::size_t i = 0; i < shm::max_worker_slots; ++i) {
    const shm::worker_row& w = t.workers[i];
    const shm::worker_state state = w.state.load(relaxed);
    if (state != shm::worker_state::running && state != shm::worker_state::draining) continue;
    const std::uint32_t generation = w.generation.load(relaxed);
    if (generation < newest) {
      held += w.connections.load(relaxed);
      sent += w.handed_over.load(relaxed);
    } else if (generation == newest) {
      taken_in += w.handed_in.load(relaxed);
    }
  }
  return held + std::max(sent, taken_in);
}

std::uint64_t own_connections(const shm::worker_row& w) {
  const std::uint64_t connections = w.connections.load(relaxed);
  const std::uint64_t handed_in = w.handed_in.load(relaxed);
  return connections > handed_in ? connections - handed_in : 0;
}

bool lighter(const receiver_load& a, const receiver_load& b, std::uint64_t mine,
             std::uint64_t all_moving) {
  return weighted(a, mine, all_moving) < weighted(b, mine, all_moving);
}

bool within_lead(const receiver_load& a, const receiver_load& b, std::uint64_t mine,
                 std::uint64_t all_moving) {
  return weighted(a, mine, all_moving) <= weighted(b, mine, all_moving) + max_lead * all_moving;
}

}  // namespace wslb::worker
