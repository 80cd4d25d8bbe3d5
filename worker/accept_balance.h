// Keeping accept load even across the workers of one generation. The kernel wakes the first
// idle worker in the listener's wait queue, and workers take turns at the head, but a worker
// whose peers are busy keeps being the idle one and would pile connections onto itself. While
// accepting, a worker compares its live `connections` with its running peers' (for long-lived
// WebSocket connections, live connections are the load): ahead, it takes fewer at a time and
// steps out of the queue when it is empty; far ahead, it steps out at once (acceptor.cpp).
// Pure on the table: the unit tests drive it on a plain table image.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "shm/layout.h"

namespace wslb::worker {

enum class accept_standing : std::uint8_t {
  alone,      // no other running worker of its generation: nobody to take turns with
  even,       // within 1/8 + 2 of the least-loaded peer's live connections
  ahead,      // more live connections than 9/8 of the least-loaded peer's + 2
  far_ahead,  // more than 5/4 of the least-loaded peer's + 8
};

// Where a worker with `mine` live connections stands against a least-loaded peer with `least`.
accept_standing standing_against(std::uint64_t mine, std::uint64_t least);

// The fewest live `connections` among the other workers of `generation` whose state is
// `running`, or nullopt when there is none. Rows [0, header.slot_high_water) are looked at.
std::optional<std::uint64_t> least_peer_connections(const shm::table& t, std::size_t slot,
                                                    std::uint32_t generation);

// The connections the same peers have accepted in all: a worker that sat out compares this
// before and after, to tell peers that took over from peers that have stopped accepting.
std::uint64_t peers_accepted(const shm::table& t, std::size_t slot, std::uint32_t generation);

}  // namespace wslb::worker
