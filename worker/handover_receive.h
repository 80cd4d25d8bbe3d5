// The receiving side of a handover: a worker of the new generation listens on a SOCK_SEQPACKET
// unix socket in the instance's private runtime directory (handover::socket_path) and takes in
// the tunnels older workers of the same instance send it: both descriptors (SCM_RIGHTS) and the
// session state (common/handover_format.h), from which it continues the relay byte-exact.
// A connection on the socket is accepted only from the pid of an older worker in this table
// and the same user (SO_PEERCRED); it is answered first with a hello naming the format version.
// Runs on the worker's loop.
#pragma once

#include "worker/worker_context.h"

namespace wslb::worker {

// Opens the socket (before the worker reports ready), when cfg.handover is on. A failure is
// logged and leaves the worker serving without taking handovers (the old ones then drain).
void open_handover_socket(worker_context& ctx);

// Closes the socket, removes its path and drops the links to senders (finish_loop).
void close_handover_socket(worker_context& ctx);

}  // namespace wslb::worker
