// The health checker: one process per instance (a child the master supervises), never one per
// worker. It probes every active backend row of the table and writes the results there.
#pragma once

#include "common/config.h"
#include "shm/layout.h"

namespace wslb::checker {

// Runs the checker until the master goes away (EOF on `master_fd`) or sends msg_stop.
// Reads backends and check settings from the table on every round, so a reload needs no
// message. Returns the process exit code.
int run_checker(const config& cfg, shm::table& table, int master_fd);

}  // namespace wslb::checker
