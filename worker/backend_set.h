// A worker's backends at run time. A worker starts with its generation's configuration; while
// that generation serves, the operator may add a backend (`wslb backend add`) or remove one
// (`wslb backend remove`) without a new generation: the master makes the row active, or marks
// it removed and frees it once empty, then bumps header.backend_epoch. Before each pick and on
// its housekeeping tick a worker compares that counter (and the serving generation) with what
// it last saw; when they moved it retires its entries whose row no longer holds their backend
// and, while its own generation serves, takes the active rows it lacks. A starting generation
// does not take rows: its configuration is the reload's, and rows the reload is about to remove
// are still active until it commits.
//
// Indices never move: sessions, counters and the affinity cookie name backends by index. A
// retired entry keeps its index until no session of this worker refers to it; only then may a
// new backend take it. Worker only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/config.h"
#include "shm/layout.h"

namespace wslb::worker {

struct worker_context;

// What the table asks of a worker's list of backends.
struct backend_set_change {
  std::uint64_t retire = 0;           // bit i: entry i's row is free or holds another backend
  std::vector<backend_config> adopt;  // active rows no entry has, made from the rows
};

// Compares `backends` (entries in `retired` aside) with the table's rows. Rows are adopted only
// when `adopt_rows` (the worker's generation serves). Pure apart from reading the table.
backend_set_change compare_with_table(const shm::table& t,
                                      const std::vector<backend_config>& backends,
                                      std::uint64_t retired, bool adopt_rows);

// The index an adopted backend takes in a list of `size` entries: the lowest retired one that no
// session holds (`held`), else `size`; shm::max_backends when the list is full.
std::size_t index_for_adopted(std::size_t size, std::uint64_t retired, std::uint64_t held);

// What a worker remembers of the table's backend rows.
struct backend_follower {
  std::uint32_t epoch_seen = 0;
  std::uint32_t generation_seen = 0;
  std::uint64_t retired = 0;  // bit i: entry i is retired
};

// Brings ctx.cfg.backends, the picker and the affinity cookie in step with the table when
// header.backend_epoch or the serving generation moved; otherwise two loads and returns.
void follow_backend_set(worker_context& ctx);

}  // namespace wslb::worker
