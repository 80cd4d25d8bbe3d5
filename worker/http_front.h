// http mode's front: reading the client's request head before a backend is chosen, and the
// short error answers a worker gives itself (400, 408, 426, 431, 502, 503, 504). Runs on the
// worker's loop; the head state lives in the session's connect_state.
#pragma once

#include "worker/session.h"

namespace wslb::worker {

// Starts reading the request head of a new http-mode session, with the handshake timeout.
void start_http_front(session* s);

// The client's bytes before the tunnel starts (on_session_read hands them here): the request
// head while it is incomplete, then whatever follows it while the backend is being connected
// (kept for the backend, up to 64 KiB, then reading pauses), and after an error answer,
// anything the client still sends (dropped).
void http_front_read(session* s, ssize_t nread, const uv_buf_t* buf);

// The handshake timeout fired while the head was still incomplete: answers 408.
void on_handshake_timeout(session* s);

// Answers `status` with a short plain-text body and closes the connection: counts it in the
// row's errors[], drops the connect state, sends the answer, shuts the client down and waits
// (at most a second) for it to go, reading and dropping what it still sends so that the close
// does not turn into a reset that would destroy the answer.
void answer_error(session* s, int status);

}  // namespace wslb::worker
