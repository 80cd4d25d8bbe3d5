// TLS under the backend side of a session, for a backend configured with `,tls`: the mirror of
// tls_transport.h. Every read from the backend socket is ciphertext that goes through the
// session's backend engine, and the plaintext comes out through backend_input()
// (connection_flow.h); every write to the backend (relay_bytes, queue_control_write, shut_down
// towards the backend) is encrypted here first and leaves through the session's raw writes,
// with the same backpressure as in plaintext.
//
// A backend connection's TLS life: TCP connected -> (PROXY header in the clear) -> ClientHello
// with SNI -> the handshake, under the connect timeout -> the chain and the name verified ->
// backend_connected (the flow goes on as in plaintext) -> relay -> close_notify with the FIN.
// A failed handshake or verification is a failed connect: counted, passive health, the next
// backend (backend_connect.h).
#pragma once

#include <cstddef>

#include "worker/session.h"

namespace wslb::worker {

// Opens the backend engine of a session whose backend just accepted the TCP connection, aims
// it at the backend (SNI, the name or address to verify) and sends the ClientHello. False when
// OpenSSL or libuv refused (the caller fails the attempt).
bool start_backend_tls(session* s);

// The backend socket's read callback, in place of backend_input, while the backend side has
// TLS: the handshake, then plaintext to backend_input.
void backend_tls_read(session* s, ssize_t nread, const char* data);

// Encrypts `len` bytes for the backend and writes them (relay_bytes semantics; `control`: our
// own bytes, queued after anything before them).
void backend_tls_write(session* s, const char* data, std::size_t len, bool control);

// Sends close_notify ahead of the FIN towards the backend (shut_down(s, to_backend)).
void backend_tls_close_notify(session* s);

}  // namespace wslb::worker
