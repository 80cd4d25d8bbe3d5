// Where an instance keeps its files besides the table: a private runtime directory
// (WSLB_RUNTIME_DIR, else /tmp/wslb-<uid>, mode 0700) holding `<name>.lock`, `<name>.sock`
// (the control socket) and `<name>.table` (the name of its table in /dev/shm, which is random:
// this private file is the only way to it). The master holds a lock on `<name>.lock` for its whole life; the kernel
// drops it when the master dies, so a crashed master never leaves a false "already running",
// and whether the lock is held is how everyone tells that an instance is alive (never its pid,
// which the kernel reuses). The lock file is never removed: two masters racing for one name
// always lock the same inode.
#pragma once

#include <string>

namespace wslb::supervisor {

// The runtime directory, created 0700 if missing. Throws std::runtime_error when it exists but
// belongs to someone else or is open to others. Used by the master and the CLI.
std::string runtime_dir();
std::string control_socket_path(const std::string& instance_name);
std::string lock_file_path(const std::string& instance_name);

// Master only: takes the instance lock at `path` (lock_file_path). Returns the lock's fd (kept
// open, close-on-exec), or -1 when another live master holds it. Throws std::runtime_error when
// the file cannot be opened or is not a plain file of this user's.
int take_instance_lock(const std::string& path);

// The segment name of instance `instance_name`'s table as its master recorded it, or "" when
// none is recorded. Throws std::runtime_error when the record is not a plain file of this
// user's. Used by the master (a table left by a killed one) and the CLI.
std::string recorded_table(const std::string& instance_name);
// Master only: records `segment` as the instance's table (0600, replaced in one rename).
void record_table(const std::string& instance_name, const std::string& segment);
// Master only, at stop: removes the record.
void forget_table(const std::string& instance_name);

// Any process: whether a live master holds the lock at `path`. Never takes the lock, so it
// cannot make a master that starts at the same moment fail.
bool instance_lock_held(const std::string& path);

}  // namespace wslb::supervisor
