// --max-connections and --max-connections-per-source: how many client connections the instance
// holds, in total and from one source address, counted over every worker row of the table (all
// generations, draining ones included). Pure functions over the table, called by a worker for
// each connection it accepts. The counts are read without a lock, so two workers accepting at
// the same moment may both see room for one more: a limit can be passed by at most one
// connection per worker, never more.
#pragma once

#include <sys/socket.h>

#include <cstdint>

#include "shm/layout.h"

namespace wslb::worker {

// Live client connections of the instance: the sum of the rows' `connections`.
std::uint64_t instance_connections(const shm::table& t);

// A source's key: a hash of its IP address (without the port; an IPv4-mapped IPv6 address as
// IPv4), never 0.
std::uint64_t source_key(const sockaddr_storage& peer);

// Live connections of source `key` over every worker row.
std::uint64_t source_connections(const shm::table& t, std::uint64_t key);

// Counts one more connection of `key` in this worker's row. Returns false (nothing counted)
// when the row's table is full of other live sources.
bool add_source(shm::worker_row& row, std::uint64_t key);

// Counts one connection of `key` less (one add_source made it).
void remove_source(shm::worker_row& row, std::uint64_t key);

}  // namespace wslb::worker
