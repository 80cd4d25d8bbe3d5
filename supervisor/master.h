// The master process: binds the listener once, creates the table, forks and supervises the
// workers and the health checker, and carries out restarts, reloads and stops. It never
// relays traffic itself.
#pragma once

#include <string>
#include <vector>

#include "common/config.h"

namespace wslb::supervisor {

// Runs the master in the foreground until it is stopped. `run_args` are the `wslb run`
// arguments: a reload parses them again, so the config file named there is re-read.
// Returns the process exit code.
int run_master(const config& cfg, const std::vector<std::string>& run_args);

}  // namespace wslb::supervisor
