// The master process: binds the listener once, creates the table, forks and supervises the
// workers and the health checker, and carries out restarts, reloads and stops. It never
// relays traffic itself.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/config.h"

namespace wslb::supervisor {

class process_ops;
class child_events;

// Makes the master's process_ops on its loop. The shipped binary uses process_ops itself; a
// test build may pass a subclass (tests/fault_injection).
using process_ops_factory =
    std::function<std::unique_ptr<process_ops>(uv_loop_t* loop, child_events& events)>;

// Runs the master in the foreground until it is stopped. `run_args` are the `wslb run`
// arguments: a reload parses them again, so the config file named there is re-read.
// Returns the process exit code (exit_code::cannot_start when start-up fails).
int run_master(const config& cfg, const std::vector<std::string>& run_args);
int run_master(const config& cfg, const std::vector<std::string>& run_args,
               process_ops_factory make_ops);

}  // namespace wslb::supervisor
