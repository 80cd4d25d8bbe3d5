// The sending side of a handover: an old worker, told by the master (msg_handover), stops
// accepting like a drain, connects to the handover socket of every running worker of the
// newest generation, and passes each established tunnel on to the least loaded of them (as
// its part of what the older workers move together: several senders even the receivers out
// between them): both descriptors over SCM_RIGHTS plus its state (common/handover_format.h).
// Tunnels are sent as the sockets take them; connections still in their handshake (HTTP
// before a 101, a backend still connecting) are sent once their tunnel starts, or finish here
// within the drain timeout, as do tunnels that cannot move (more than 64 KiB unwritten, an
// answer of our own still queued, a backend the new generation does not have). Runs on the
// worker's loop.
#pragma once

#include "worker/worker_context.h"

namespace wslb::worker {

// msg_handover: begins the drain and hands over what can move. Falls back to a plain drain,
// and logs why, when no newer worker takes handovers or speaks this format version.
void begin_handover(worker_context& ctx);

// Closes the links to the receivers and the retry timer (finish_loop).
void close_handover_links(worker_context& ctx);

}  // namespace wslb::worker
