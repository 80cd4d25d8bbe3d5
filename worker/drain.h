// How a worker ends: draining (told by the master, or SIGQUIT), stopping at once (msg_stop,
// SIGTERM/SIGINT, or the master gone), and the spread-out clean closes at the drain deadline.
// Runs on the worker's loop.
#pragma once

#include "worker/worker_context.h"

namespace wslb::worker {

// Stops accepting (closing this process's copy of the listener), keeps relaying, and exits 0
// when the last connection closes. At now + cfg.drain_timeout_ms (also written to the row's
// drain_deadline_ms) what is left is closed cleanly, spread over min(2 s, drain_timeout / 4):
// upgraded connections get a close frame 1001 both ways at frame boundaries, others a FIN.
// Idempotent.
void begin_drain(worker_context& ctx);

// Closes every connection now and ends the loop; the worker exits with `code`. `why` is
// logged. Idempotent.
void stop_now(worker_context& ctx, const char* why, int code);

// Ends the loop once a draining worker has no connection left (called whenever a session is
// freed).
void check_drained(worker_context& ctx);

// Closes the worker's own handles so that the loop ends once the sessions are gone.
void finish_loop(worker_context& ctx);

}  // namespace wslb::worker
