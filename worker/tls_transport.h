// TLS under the client side of a session, when the listener has certificates. It sits at the
// session's two doors: every read from the client socket is ciphertext that goes through the
// session's engine, and the plaintext comes out through client_input() (connection_flow.h);
// every write to the client (relay_bytes, queue_control_write, shut_down towards the client)
// is encrypted here first and leaves as ciphertext through the session's raw writes. Above
// it the relay, backpressure, frame tracking, drain and timeouts run as in plaintext.
//
// A connection's TLS life: accept -> handshake (counted among the worker's handshakes in
// progress, which the acceptor caps; the handshake timeout applies) -> the connection's flow
// starts (http: the request head; tcp: connect) -> relay -> close_notify with the FIN.
// Memory: the session's engine is one SSL pointer; with SSL_MODE_RELEASE_BUFFERS an idle
// connection holds no record buffer, and ciphertext passes through the loop's engine_io.
// An established TLS 1.3 connection idle for --tls-park-after is parked (tls::engine::park):
// its SSL object is freed and the engine's parked stream carries its records from then on,
// through the same calls below, for the rest of its life.
#pragma once

#include <cstddef>

#include "worker/session.h"

namespace wslb::worker {

// Starts the handshake of a freshly opened session (its front_state is open): reads the
// client and arms the handshake timeout. False when OpenSSL or libuv refused (the caller
// closes the session).
bool start_tls(session* s);

// The client socket's read callback, in place of client_input, while the session has TLS.
void tls_client_read(session* s, ssize_t nread, const char* data);

// The handshake timeout fired: the connection is closed and counted as abandoned.
void tls_handshake_timed_out(session* s);

// Encrypts `len` bytes for the client and writes them (relay_bytes semantics: straight
// through, else one queued remainder and the source paused; `control`: our own bytes, queued
// after anything before them).
void tls_write(session* s, const char* data, std::size_t len, bool control);

// Sends close_notify ahead of the FIN towards the client (shut_down(s, to_client)).
void tls_close_notify(session* s);

// The session is closing: a handshake still in progress stops counting; the SSL (or the
// parked stream) is freed.
void end_tls(session* s);

// Housekeeping: parks the TLS 1.3 connections that have read nothing for --tls-park-after
// (see tls/parked_stream.h), and gives the memory freed back to the system.
void park_idle_tls(worker_context& ctx);

}  // namespace wslb::worker
