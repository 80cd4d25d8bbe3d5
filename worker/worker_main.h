// A worker process: one libuv loop that accepts from the shared listener, picks a backend
// through the table and relays bytes both ways. Entered in the child right after fork().
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/child_channel.h"
#include "common/config.h"
#include "shm/layout.h"

namespace wslb::worker {

using child_channel::msg_drain;
using child_channel::msg_handover;
using child_channel::msg_ready;
using child_channel::msg_stop;

struct launch {
  const config& cfg;        // the configuration this generation serves (inherited by fork)
  shm::table& table;        // inherited mapping
  int listen_fd;            // the master's listener (non-blocking), shared by all workers
  int master_fd;            // socketpair end; EOF means the master is gone: exit
  std::size_t slot;         // this worker's row in table.workers
  std::uint32_t generation;
  std::string runtime_dir = {};  // where handover sockets live; empty: no handover
};

// How many client connections one worker holds under a descriptor limit of `fd_limit` (two
// descriptors each, some kept back for the listener, the master link, libuv and stdio). A
// worker pauses accepting at this many. Pure; the master may call it to tell the operator.
std::size_t max_connections_for(std::size_t fd_limit);

// Runs the worker until it has drained or was told to stop. Returns the process exit code
// (exit_code::ok, or exit_code::fatal_config when it cannot start with this configuration:
// no backend, a backend without a table row, no event loop, listener or master link).
// Called in the child right after fork(); the caller _exit()s with the result.
//
// What the master can rely on:
//   - msg_ready is sent once, when the worker polls the listener;
//   - msg_drain (or SIGQUIT): stops accepting and closes its copy of listen_fd at once, writes
//     its row's drain_deadline_ms (now + cfg.drain_timeout_ms), relays on, exits 0 when its last
//     connection closes; at the deadline closes what is left cleanly within about 4.5 s;
//   - msg_handover: as msg_drain, and established tunnels move to the newest generation's
//     running workers (worker/handover_send.h) instead of waiting for the deadline;
//   - msg_stop, SIGTERM, SIGINT, EOF on master_fd: closes everything at once and exits 0;
//   - it writes only its own row: connections, accepted, errors[], backends[].active/total/
//     bytes_in/bytes_out/failures, drain_deadline_ms; and, for passive health, a backend row's
//     healthy (1 -> 0 only), check_streak, last_error, passive_fail_streak, transitions;
//   - SIGHUP and SIGUSR2 are ignored (they are the master's), SIGPIPE too.
int run_worker(const launch& how);

}  // namespace wslb::worker
