// Accepting from the listener every worker shares. Not uv_listen: the worker registers the
// shared non-blocking descriptor with EPOLLEXCLUSIVE itself and calls accept4(), so that (a) a
// new connection wakes one idle worker, not all of them, (b) workers take turns (each steps to
// the back of the wait queue after a wake-up, and sits out for a moment when it is ahead of its
// peers, see accept_balance.h) and (c) it can pause cleanly when it runs out of descriptors.
// Runs on the worker's loop.
#pragma once

#include "worker/worker_context.h"

namespace wslb::worker {

// Starts polling ctx.listen_fd. Returns a libuv error code, 0 on success.
int start_accepting(worker_context& ctx);

// Stops accepting for good and closes this process's copy of the listener (the master keeps
// its own open, so connections waiting in the queue are taken by the other workers).
void stop_accepting(worker_context& ctx);

// A TLS handshake ended (done, failed or abandoned): accepting resumes if it waited for the
// handshakes in progress to drop below --tls-max-handshakes.
void on_handshake_finished(worker_context& ctx);

}  // namespace wslb::worker
