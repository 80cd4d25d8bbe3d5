// Whether a process named in the table (a master, a worker) is still running.
#pragma once

#include <sys/types.h>

namespace wslb {

// True when `pid` exists and is not a zombie: a master killed with kill -9 stays a zombie until
// its parent reaps it, and its table is stale from the moment it died. Any process.
bool process_running(pid_t pid);

}  // namespace wslb
