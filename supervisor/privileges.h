// `--user USER[:GROUP]`: the master binds its sockets as root, then becomes USER for good
// (group GROUP, else USER's login group; supplementary groups USER's own), before it creates
// anything: the runtime directory, lock, table, control socket, state file and logs are then
// USER's, and the workers and the checker it forks run as USER too.
#pragma once

#include <string>

#include "common/config.h"

namespace wslb::supervisor {

// Switches this process to `who` for good: supplementary groups, gid, uid, then checks that
// root cannot be regained. Returns false with `error` (not root, or a call refused). A process
// already running as `who` succeeds without change. Master only, at start-up.
bool drop_privileges(const run_as_config& who, std::string& error);

}  // namespace wslb::supervisor
