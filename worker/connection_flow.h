// A connection's life, in order, in one place:
//
//   accept -> read the request head -> pick -> connect -> forward -> relay
//                 ^                                                   |
//                 +------ next request on a kept-alive connection ----+--> 101: tunnel
//
// http mode, per request: the head is parsed and checked (400/408/426/431), rewritten
// (forwarding and hop-by-hop headers) and forwarded; its body is relayed as delimited by
// Content-Length or chunked; the response is followed to its end (status line, Content-Length,
// chunked, close-delimited, 1xx, HEAD, 204/304) and the connection goes back to reading the
// next head. An upgrade request is answered before anything more of the client is relayed: a
// 101 starts the tunnel, any other answer returns the connection to HTTP.
//
// Backend connection reuse: a kept-alive client connection keeps its backend connection
// (HAProxy's `http-reuse never`: never shared with another client) for as long as its requests
// go to that backend; a request that must go elsewhere (affinity cookie, a hash key, the
// backend went down) closes it and connects to the other backend. Pipelining: requests are
// answered in order, one at a time: the next request is read only once the previous response
// is complete (what the client sent meanwhile waits, up to 64 KiB, then reading pauses).
//
// tcp mode: accept -> pick -> connect -> tunnel (watched for a 101 to track frames).
// Everything runs on the worker's loop. Phases: session.h `phase`.
#pragma once

#include <uv.h>

#include "worker/session.h"

namespace wslb::worker {

// accept: the acceptor hands over a freshly accepted non-blocking socket (ownership of `fd`).
void start_session(worker_context& ctx, int fd, const sockaddr_storage& peer);

// After accept (and, on a TLS listener, once the handshake is done): the connection's flow
// begins: tcp mode connects, http mode waits for the first request head.
void start_connection_flow(session* s);

// The one door for client bytes (`nread` > 0), the client's FIN (UV_EOF) or a read error: the
// transport under the client side (plain TCP today) calls this for every read.
void client_input(session* s, ssize_t nread, const char* data);

// The backend's bytes, FIN or read error (plaintext: a TLS backend's come through
// backend_tls.h).
void backend_input(session* s, ssize_t nread, const char* data);

// The outcomes of connect_backend (backend_connect.h): connected (send the PROXY header and
// the request, or start the tcp tunnel), or none could be (answer `http_status`: 503 nothing
// healthy, 502 refused/reset, 504 timed out; tcp mode: close).
void backend_connected(session* s);

// The PROXY header (--proxy-protocol), once per backend connection before anything else on
// it: through relay_bytes, or with `raw` straight to the socket (a TLS backend: ahead of the
// handshake). Nothing when the protocol is off.
void send_proxy_header(session* s, bool raw);
void no_backend_connected(session* s, int http_status);

// A draining worker ends the kept-alive connections that wait between requests at once (as
// nginx does at a graceful shutdown); the others end after their current response.
void close_idle_keepalive(worker_context& ctx);

// The front_state's timer: the request head's deadline (408; a kept-alive connection that
// stays quiet is closed without an answer) or the connect attempt's (fail over).
void on_front_timer(uv_timer_t* t);

// Answers `status` with a short plain-text body and ends the connection: counts it in the
// row's errors[], drops the backend connection and the front state, sends the answer, shuts
// the client down and waits (at most a second) for it to go, reading and dropping what it
// still sends so that the close does not turn into a reset that would destroy the answer.
// Only while nothing of a response has reached the client.
void answer_error(session* s, int status);

// The same for a client that waited --queue-timeout for a place under maxconn: 503 with
// `Retry-After` (the queue timeout in whole seconds, at least 1), counted as queue_timeout_503.
void answer_busy(session* s, std::uint32_t queue_timeout_ms);

}  // namespace wslb::worker
