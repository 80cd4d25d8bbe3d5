// How a handover spreads tunnels over the new workers by their load when several old workers
// send at once. Each sender sees the receivers' loads in the table, but not the other senders'
// tunnels still on their way, and each looks at its own moment: filling the least loaded
// receiver as if it sent alone, two senders would both fill it (0 and 200 held became 300 and
// 200). So each sender fills only its part of every receiver's gap to the even share: its part
// of what moves (mine / all that moves), from figures every sender reads alike whenever it
// looks. Pure on the table: the unit tests drive it on a plain table image. Used by the
// sending worker (worker/handover_send.h).
#pragma once

#include <cstdint>

#include "shm/layout.h"

namespace wslb::worker {

// What the workers older than generation `newest` move to it in all, as the table shows it
// now: what they still hold, plus what they have sent, or what the newest workers have taken
// in when that is more (a sender that has exited has had its row cleared; a tunnel in flight is
// on neither side).
std::uint64_t moving_in_all(const shm::table& t, std::uint32_t newest);

// What a receiving worker holds of its own (connections it accepted, not those handed in to
// it), which moving_in_all counts already.
std::uint64_t own_connections(const shm::worker_row& w);

// One receiver as a sender counts it.
struct receiver_load {
  std::uint64_t own = 0;   // own_connections when the sender connected to it
  std::uint64_t sent = 0;  // what this sender has sent it since
};

// True when `a` is less loaded than `b`, as a sender that moves `mine` of `all_moving` counts
// them: own weighted by mine / all_moving, plus sent (cross-multiplied, no division, as the
// backend picker compares loads). With one sender (mine == all_moving) plain least-loaded.
bool lighter(const receiver_load& a, const receiver_load& b, std::uint64_t mine,
             std::uint64_t all_moving);

// While the least loaded receiver's socket is full, a sender goes on with the next one only as
// long as that one is at most this many tunnels ahead of it, as the sender counts them; beyond,
// it waits for the full one. Unbounded, a receiver descheduled for a moment ended 300 tunnels
// short of its peer's 19,000, and near the descriptor limit the peer could run out.
inline constexpr std::uint64_t max_lead = 64;

// True when `a` is at most max_lead tunnels ahead of `b` (as in lighter()).
bool within_lead(const receiver_load& a, const receiver_load& b, std::uint64_t mine,
                 std::uint64_t all_moving);

}  // namespace wslb::worker
