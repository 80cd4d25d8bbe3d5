// Where an instance keeps its files besides the table: a private runtime directory
// (WSLB_RUNTIME_DIR, else /tmp/wslb-<uid>, mode 0700) holding `<name>.lock` (held with flock
// by the master for its whole life: the kernel drops it when the master dies, so a crashed
// master never leaves a false "already running") and `<name>.sock` (the control socket).
#pragma once

#include <string>

namespace wslb::supervisor {

// The runtime directory, created 0700 if missing. Throws std::runtime_error when it exists but
// belongs to someone else or is open to others. Used by the master and the CLI.
std::string runtime_dir();
std::string control_socket_path(const std::string& instance_name);
std::string lock_file_path(const std::string& instance_name);

// Master only: takes the instance lock at `path` (lock_file_path). Returns the lock's fd (kept
// open, close-on-exec), or -1 when another live master holds it.
int take_instance_lock(const std::string& path);

}  // namespace wslb::supervisor
