// Closing established connections on purpose, at a steady pace, so that clients reconnect and
// land elsewhere: rebalancing (a backend above its target share sheds random connections older
// than --rebalance-min-age, at the rate the master's plan gives it) and `backend evacuate`
// (every connection of the backend closed along a straight line over the given time). The
// master decides (supervisor/rebalancer.h, the evacuation fields of the backend row); each
// worker carries it out for its own connections, in proportion to its share of them.
// A shed WebSocket gets a close frame with --rebalance-close-code (1012) towards the client and
// 1001 towards the backend, at frame boundaries; a plain tunnel gets a FIN both ways.
// Runs on the worker's loop, on its own 100 ms tick.
#pragma once

#include <uv.h>

#include <array>
#include <cstdint>

#include "shm/layout.h"
#include "worker/serving_ring.h"

namespace wslb::worker {

struct worker_context;

// What one worker remembers of the shedding of one backend (by configured index).
struct shed_state {
  std::int64_t evacuation_seen = 0;  // evacuate_start_ms this worker has begun following
  std::uint64_t evacuation_total = 0;  // its connections to the backend when it began
  std::uint64_t evacuation_done = 0;
  std::uint64_t budget_milli = 0;    // rebalance closes owed, in thousandths
};

struct shedder {
  uv_timer_t timer{};
  bool open = false;
  std::uint64_t last_tick_ms = 0;  // loop time
  std::array<shed_state, shm::max_backends> backends{};
  serving_ring serving;  // hash modes: where a key belongs now
};

// Starts the tick (at worker start) / closes it (when the loop finishes).
void start_shedding(worker_context& ctx);
void stop_shedding(worker_context& ctx);

// One tick's work, `elapsed_ms` since the last (public for the tick and for tests).
void shed_tick(worker_context& ctx, std::uint64_t elapsed_ms, std::int64_t now_unix_ms);

}  // namespace wslb::worker
