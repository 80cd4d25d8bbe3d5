// Getting a session a connected backend: pick (the affinity cookie's backend first while it is
// eligible), count, connect with a timeout (the TLS handshake of a `tls` backend included),
// fail over to the next backend (each at most once per
// request), record passive health. Exactly one outcome goes back to the flow
// (connection_flow.h): backend_connected(s) or no_backend_connected(s, status). The state for
// this lives in the session's front_state.
#pragma once

#include <uv.h>

#include <cstdint>
#include <string>

#include "worker/session.h"

namespace wslb::worker {

// Picks a backend (excluding those tried for this request) that has a place under its maxconn
// and connects to it. If the session still has a backend connection open (a kept-alive
// connection whose next request goes elsewhere), that one is closed first. When the only
// eligible backends left are full, or others already wait, the session waits in the worker's
// queue (connect_queue.h) instead.
void connect_backend(session* s);

// For the queue: tries to place the queued session `s` now. Returns false when every eligible
// backend is still full (it stays queued); true when it left the queue (connecting, or no
// backend is eligible any more and it was answered).
bool connect_queued(session* s);

// The connect attempt in progress took longer than --connect-timeout: fails over; or, for a
// queued session, the queue timeout passed (connect_queue.h on_queue_timeout).
void on_connect_timeout(session* s);

// The outcomes of a TLS backend's handshake (backend_tls.h): verified, the flow goes on
// (backend_connected); or failed (`why`: the verification error or the TLS failure), which is a
// failed connect like a refused one: counted, passive health, logged once per backend until
// the reason changes, and the next backend is tried.
void backend_tls_connected(session* s);
void backend_tls_failed(session* s, const std::string& why);

// Closes the session's backend connection (the backend closed an idle kept-alive connection)
// and takes it out of the live counts; the next request connects again.
void drop_backend(session* s);

// The sticky key of a client address (source-hash): a hash of its IP, without the port.
std::uint64_t hash_client_address(const sockaddr_storage& peer);

}  // namespace wslb::worker
