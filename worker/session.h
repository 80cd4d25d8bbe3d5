// One client connection and its backend connection: the unit a worker relays. One allocation
// per client holds both libuv handles and a few bytes of state; an idle session owns no buffer
// (reads use the loop's one buffer). Everything here runs on the worker's loop thread.
// The order of a connection's life (accept, head, pick, connect, forward, relay) is told by
// worker/connection_flow.cpp; this file holds the session object and the byte mechanics the
// flow uses: writes with backpressure, FIN passing, the tunnel with its frame tracking, closes.
//
// Transport seam (where TLS goes under the client side): every byte read from the client
// enters through client_input() (connection_flow.h), called by the client stream's read
// callback; every byte written to the client leaves through relay_bytes(s, to_client, ...) or
// queue_control_write(s, to_client, ...), and the client's FIN through shut_down(s, to_client).
// Nothing else touches the client stream's reads or writes. The backend side has the same
// seam (backend_input, relay_bytes / queue_control_write / shut_down to_backend), where TLS
// towards a `tls` backend goes (backend_tls.h).
//
// Memory bound per session: sizeof(session) (about 600 bytes) while idle; while a peer is slow,
// at most one queued buffer per direction of at most read_buffer_size (64 KiB), because
// reading from a source stops until its queued remainder has been written. So a session never
// holds more than sizeof(session) + 2 x (64 KiB + sizeof(write_chunk)), whatever its peers do.
#pragma once

#include <uv.h>

#include <cstddef>
#include <cstdint>

#include "protocol/http_response.h"
#include "protocol/websocket.h"
#include "tls/engine.h"
#include "worker/worker_context.h"

namespace wslb::worker {

struct front_state;
struct access_record;

// Where a connection is in its life. One phase at a time; the per-direction details of the
// relay (FIN seen, shut down, paused) stay in the small masks below.
enum class phase : std::uint8_t {
  tls_handshake,  // TLS listener: the TLS handshake, before anything else (tls_transport.h)
  reading_head,  // http: reading a request head (the first, or the next on a kept-alive
                 // connection: the backend connection, if any, stays open and idle)
  connecting,    // a backend is being picked and connected (tcp mode: then the tunnel)
  exchanging,    // http: a request is forwarded; its body and its response are relayed, framed
  upgrading,     // http: an upgrade request is forwarded; nothing more from the client is
                 // relayed until the backend answers (101: tunnel; else back to HTTP)
  tunnel,        // bytes both ways, unparsed: tcp mode, or after a 101 (frames tracked)
  answered,      // our error answer, or the last response, is out; waiting for the client to go
};

// What the connection turned out to be, for the access log and counters.
enum class connection_kind : std::uint8_t { unknown, http, websocket, tcp };

// A direction of the relay, named by where the bytes go. Used as an index and as a bit (1 << d).
enum direction : std::uint8_t { to_backend = 0, to_client = 1 };

// A queued write: the unwritten remainder of one read (or a frame or answer of our own), in one
// allocation with its request. Freed by the write callback.
struct write_chunk {
  uv_write_t req;
  std::uint32_t len;
  direction dir;
  bool control;  // our own bytes (close frame, error answer): not the direction's pending data
  char* bytes() { return reinterpret_cast<char*>(this + 1); }
};

// What a relayed stream is watched for: before the backend's answer is known, its status line
// (did it switch to WebSocket?); after a 101, the frame boundaries of both directions. Never
// both at once, so they share the bytes.
union stream_watch {
  stream_watch() {}
  protocol::response_sniffer sniffer;
  protocol::frame_tracker track[2];  // by direction
};

inline constexpr std::uint16_t no_backend_index = 0xFFFF;

struct session {
  uv_tcp_t client;
  uv_tcp_t backend;
  session* prev = nullptr;
  session* next = nullptr;
  front_state* hs = nullptr;  // from accept until the tunnel starts (HTTP, connect); else null
  access_record* access = nullptr;  // with --access-log: what its next line says
  tls::engine tls;            // TLS listener: the client side's TLS (one pointer); else empty
  tls::engine backend_tls;    // a `tls` backend: the backend side's TLS (backend_tls.h)
  write_chunk* pending[2] = {nullptr, nullptr};  // by direction: at most one queued remainder
  stream_watch watch;
  std::uint32_t last_active_ms = 0;  // loop time (truncated) of the last read: idle timeout
  std::uint32_t close_at_ms = 0;     // loop time (truncated) a graceful close gives up waiting
  std::uint64_t sticky_key = 0;      // the client's balancing key, if has_sticky_key (shedding)
  std::uint16_t client_close_code = 0;  // close code a graceful close sends the client; 0: 1001
  std::uint16_t backend_index = no_backend_index;  // configured index of the chosen backend
  std::uint16_t last_status = 0;  // HTTP status of the last response relayed (or answered)
  std::uint32_t requests = 0;     // HTTP requests forwarded on this connection
  std::uint64_t source_key = 0;   // counted under this source key in the row (0: not counted)
  std::uint64_t accepted_ns = 0;         // uv_hrtime() at accept (handshake, lifetime)
  std::uint64_t connect_started_ns = 0;  // uv_hrtime() when the backend connect began
  shm::close_cause cause = shm::close_cause::error;  // why it ends, once cause_noted
  phase at = phase::connecting;
  connection_kind kind = connection_kind::unknown;
  std::uint8_t open_handles = 0;  // libuv handles of this session not yet closed
  // Per-direction state, one bit per direction (1 << d).
  std::uint8_t eof_mask = 0;        // the source of d sent FIN
  std::uint8_t shut_sent_mask = 0;  // the destination of d was shut down (FIN passed on)
  std::uint8_t shut_done_mask = 0;  // ... and that shutdown completed
  std::uint8_t paused_mask = 0;     // reading from the source of d stopped (backpressure)
  std::uint8_t finishing_mask = 0;  // graceful close: waiting for d's next frame boundary
  std::uint8_t done_mask = 0;       // graceful close: d is finished, further input is dropped
  std::uint8_t reading_mask = 0;    // libuv reads from the source of d are on
  bool dead : 1 = false;            // closing its handles; freed when they are all closed
  bool graceful : 1 = false;        // a graceful close is under way
  bool upgraded : 1 = false;        // the backend answered 101: frames are tracked
  bool sniffing : 1 = false;        // tcp mode: watching the backend's first bytes for a 101
  bool backend_open : 1 = false;    // `backend` initialised and not closed
  bool counted : 1 = false;         // counted in the row's backends[backend_index].active
  bool cause_noted : 1 = false;     // `cause` is set
  bool has_sticky_key : 1 = false;  // sticky_key holds the key the backend was chosen by
  bool pinned : 1 = false;          // placed by the affinity cookie: rebalancing leaves it
  bool tls_handshaking : 1 = false; // counted in the worker's TLS handshakes in progress
  bool handed_over : 1 = false;     // passed to a newer worker, which records its end

  // Bytes are moving between the client and a backend (idle timeout, on-down close apply).
  bool relaying() const {
    return at == phase::exchanging || at == phase::upgrading || at == phase::tunnel;
  }

  uv_stream_t* stream(direction d, bool source) {
    const bool client_side = (d == to_backend) == source;
    return reinterpret_cast<uv_stream_t*>(client_side ? &client : &backend);
  }
  worker_context& ctx() const { return worker_context::of(client.loop); }
};

// Allocates a session for a freshly accepted, non-blocking client socket and links it; null
// (fd closed) when that failed. Counts it in the row (connections, accepted).
session* open_session(worker_context& ctx, int fd);

// Turns on TCP keepalive with TCP_USER_TIMEOUT on a connection's socket (--tcp-keepalive on):
// probes after 60 s of silence, every 10 s, 6 unanswered ones end it; data unacknowledged
// for 120 s ends it too. So a peer that vanished (power loss, a dropped NAT mapping) is found
// within about two minutes on either side of a tunnel.
void enable_keepalive(int fd);

// From here on the session relays bytes both ways unparsed: frees the front state, turns
// reading on for both sides (unless a side finished or is paused) and passes a FIN the client
// already sent. `watch_for_101` (tcp mode): the backend's first bytes are watched for a 101,
// after which frames are tracked. With `upgraded` (http mode after a 101) frames are tracked
// from now; the caller has fed the trackers what it relayed already.
void start_tunnel(session* s, bool watch_for_101);

// The tunnel's relay of one read from the source of `d` (frame tracking, graceful close).
void tunnel_bytes(session* s, direction d, const char* data, std::size_t len);
// The source of `d` sent its FIN (or failed: `nread` < 0 other than EOF) while tunnelling.
void tunnel_end(session* s, direction d, ssize_t nread);

// Sends `len` bytes to the destination of `d`: straight through when the socket takes them,
// else the remainder is copied once and queued, and the source of `d` is paused until it is
// written (backpressure). Closes the session when the destination is gone.
void relay_bytes(session* s, direction d, const char* data, std::size_t len);

// The transport's own write to the destination of `d`, under relay_bytes (which encrypts
// towards a TLS client first): the same straight-through write with backpressure, or with
// `control` a queued write after anything before it, with no pause.
void send_raw(session* s, direction d, const char* data, std::size_t len, bool control);

// Closes both connections now. Idempotent; the session is freed once libuv has closed its
// handles. Safe to call from any of the session's callbacks.
void close_session(session* s);

// Closes a relaying session cleanly: for an upgraded connection, a close frame 1001 to each
// side at that direction's next frame boundary, then FIN both ways; otherwise FIN both ways.
// Gives up waiting (boundary, peers' FIN) after about a second and closes. Sessions that are
// not relaying yet are closed at once.
void close_session_gracefully(session* s);

// The read callback of both of a session's streams (connection_flow.cpp): client reads go to
// client_input, backend reads to backend_input.
void on_session_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);

// Turns libuv reads from the source of `d` on or off (no system call when already so).
// Returns false when libuv refused (the caller closes the session).
bool set_reading(session* s, direction d, bool on);

// Passes a FIN on: shuts the destination of `d` down once what is queued to it is written.
void shut_down(session* s, direction d);

// Queues our own bytes (a close frame, an error answer) to the destination of `d` after
// anything queued before. Returns false (and closes nothing) when the write could not be queued.
bool queue_control_write(session* s, direction d, const void* data, std::size_t len);

// One of the session's libuv handles has been closed; frees the session after its last one
// once it is being closed.
void release_handle(session* s);

// Takes the session's connection out of its backend's live count (the row's `active`).
void uncount_backend(session* s);

// Housekeeping (about every 250 ms): idle timeouts and graceful closes that waited too long.
void sweep_sessions(worker_context& ctx);

// The same walk, but only when a graceful close's deadline has come: the drain's closing window
// ticks every 10 ms, and a walk over every session each time would cost O(sessions).
void sweep_due_closes(worker_context& ctx);

// Gives a graceful close (or an error answer) its deadline, `in_ms` from now.
void set_close_deadline(session* s, std::uint32_t in_ms);

// Lets the acceptor know descriptors were released (defined in acceptor.cpp).
void on_session_released(worker_context& ctx);

}  // namespace wslb::worker
