// Accepting from the listener every worker shares. Not uv_listen: the worker polls the shared
// non-blocking descriptor itself and calls accept4(), so that it can (a) let its peers go first
// when it is ahead (even accept load, see accept_balance.h) and (b) pause cleanly when it runs
// out of descriptors. Runs on the worker's loop.
#pragma once

#include "worker/worker_context.h"

namespace wslb::worker {

// Starts polling ctx.listen_fd. Returns a libuv error code, 0 on success.
int start_accepting(worker_context& ctx);

// Stops accepting for good and closes this process's copy of the listener (the master keeps
// its own open, so connections waiting in the queue are taken by the other workers).
void stop_accepting(worker_context& ctx);

}  // namespace wslb::worker
