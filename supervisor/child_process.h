// Forking a worker or the checker. The child keeps only the descriptors it is given (the
// master's loop, control socket, lock file and other children's channels are closed), gets
// default signal dispositions back, asks the kernel for SIGTERM when the master dies, and
// never returns into the master's code: it runs `body` and _exits with its result.
#pragma once

#include <sys/types.h>

#include <functional>
#include <initializer_list>

namespace wslb::supervisor {

// Returns the child's pid in the master, or -1 (errno set) when fork failed.
pid_t fork_child(std::initializer_list<int> keep_fds, const std::function<int()>& body);

}  // namespace wslb::supervisor
