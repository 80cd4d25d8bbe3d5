// Whether a backend may take one more connection: its maxconn across every worker of every
// generation and, with --cluster, the other nodes' last-known counts; and its slow-start ramp.
// Pure over the table (no libuv), so the unit tests drive it on a plain table image; the
// worker calls it for each pick (backend_connect.cpp).
#pragma once

#include <cstddef>
#include <cstdint>

#include "shm/layout.h"

namespace wslb::worker {

// Takes one place under `maxconn` on backend row `backend` for the worker whose row is `self`,
// and counts it in self's live count for the backend (`active`), or returns false having
// changed nothing. `maxconn` 0 means no limit (counted at once).
//
// Several workers may race for the last place. Each publishes its reservation in its own row,
// then (after a seq_cst fence) sums every row's live count, the other nodes' last-known count
// (backend_row::cluster_active, 0 without --cluster) and the other reservations for the
// same backend: of two racing workers at least one sees the other (Dekker), so they never
// both take the last place; at worst both refuse and retry from their queues. A reservation
// lasts only these few instructions and is released with the row of a worker that dies.
bool reserve_place(shm::table& t, shm::worker_row& self, std::size_t backend, std::uint32_t maxconn);

// The weight a backend has now, in thousandths, during its slow start: `weight` x 1000 scaled
// by the time since `up_since_ms` over `slowstart_ms`, at least 1; the full weight x 1000
// before, after, or without a ramp (`up_since_ms` 0: up since the instance started).
// Least-connections compares live counts against these weights, so a backend that just came
// up gets new connections in proportion to how far its ramp has gone, not all at once.
std::uint64_t ramped_weight_milli(std::uint32_t weight, std::int64_t up_since_ms,
                                  std::uint32_t slowstart_ms, std::int64_t now_ms);

}  // namespace wslb::worker
