// The cluster agent: one process per instance (a child the master supervises, like the health
// checker), present only with --cluster. Every interval it publishes this node's live counts
// per backend to Redis and writes the other nodes' into the table (backend_row::cluster_active),
// where the workers' least-conn reads them. Workers never talk to Redis: a slow or dead Redis
// delays nothing but this process.
#pragma once

#include "common/config.h"
#include "shm/layout.h"

namespace wslb::cluster {

// Runs the agent until the master goes away (EOF on `master_fd`), sends msg_stop, or SIGTERM.
// Reads the backends from the table every round, so a reload needs no message. Returns the
// process exit code.
int run_agent(const config& cfg, shm::table& table, int master_fd);

}  // namespace wslb::cluster
