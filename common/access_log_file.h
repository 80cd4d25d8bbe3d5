// The access log's file (`--access-log PATH|-`): how it is opened, by the master when it
// checks the flag and by each worker when it starts and on every reopen (log rotation).
#pragma once

#include <fcntl.h>

#include <string>

#include "common/config.h"

namespace wslb {

// `--access-log -`: the lines go to standard output.
inline constexpr const char* access_log_stdout = "-";

// How the file is opened, first and on every reopen: appending, created with mode 0640,
// close-on-exec, non-blocking for a FIFO.
inline constexpr int access_log_open_flags = O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK;
inline constexpr int access_log_mode = 0640;

// Opens `path` with those flags. Returns the descriptor, or -errno.
int open_access_log_file(const std::string& path);

// Checks that `path` can be opened for appending, creating it, and when root starts an
// instance with --user gives the file to that user, so the workers (running as that user)
// can open it and reopen it later. Returns "" or why not ("cannot open '/x/y.log': No
// such file or directory"). Called while the flags are validated (start and reload).
std::string prepare_access_log_file(const std::string& path, const run_as_config& run_as);

}  // namespace wslb
