// The instance's one listening socket: bound once by the master, kept open for the master's
// whole life, inherited by every worker generation.
#pragma once

#include <string>

#include "common/config.h"

namespace wslb::supervisor {

// Binds and listens on `where` (non-blocking, SO_REUSEADDR, the largest backlog the kernel
// allows). Returns the fd. Start-up code: throws std::runtime_error on failure
// ("cannot listen on 127.0.0.1:80: Address already in use").
int open_listener(const endpoint& where);

}  // namespace wslb::supervisor
