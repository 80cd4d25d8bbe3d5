// What the access log keeps about one client connection while it lives, and when it writes
// a line (worker/access_line.h has the fields):
//   - http: one line per request, when its response is complete and the connection goes on
//     (kept alive); the connection's last request (or an error answer, a refusal, a client
//     that never sent a whole head) gets its line when the connection closes, with the close
//     cause. A kept-alive connection that closes between requests adds no line.
//   - websocket (an upgrade answered 101) and tcp: one line when the connection closes.
// So every connection has at least one line, and every request exactly one, as nginx and
// HAProxy in http mode log. Bytes are counted at the client side: read from it, written to
// it (our own answers and close frames included), from the start of what the line covers.
// The record exists only with --access-log (session::access is null otherwise). Worker only.
#pragma once

#include <uv.h>

#include <cstdint>
#include <string>

#include "common/access_text.h"
#include "common/handover_format.h"
#include "worker/session.h"

namespace wslb::worker {

struct access_record {
  std::uint64_t started_ns = 0;  // uv_hrtime() when what the next line covers began; 0: nothing
                                 // since the last line (the connection is between requests)
  std::uint64_t bytes_in = 0;
  std::uint64_t bytes_out = 0;
  access_text text;  // the client, and the current request (http mode) truncated to a bounded size
};

// At accept: gives the session its record when the worker logs. `peer` is the client.
void open_access_record(session* s, const sockaddr_storage& peer);

// A complete request head was read: keeps its method, path, Host, User-Agent and, from a
// trusted proxy, its X-Forwarded-For.
void note_access_request(session* s);

// The response of a request is complete and the connection waits for the next one: its line.
void write_request_line(session* s);

// The connection is closing (close_session, after record_end noted the cause): the last line
// if anything since the previous one is unlogged; frees the record.
void close_access_record(session* s);

// Handover (worker/handover_send.h, handover_receive.h): a tunnel that moves to a new worker
// takes its record along, and its one line is written by the worker where it ends.
// The sender: puts the record in `rec` (flag_access), and drops it once the tunnel is sent.
void describe_access_record(const session* s, handover::tunnel_record& rec);
void forget_access_record(session* s);
// The receiver, when it logs: the record from `rec`, or (the sender did not log) a new one
// from now with the client's address read from `client_fd`. Call before the unwritten bytes
// are relayed: they were counted by the sender already.
void adopt_access_record(session* s, const handover::tunnel_record& rec, int client_fd);

// Bytes read from the client (client_input) and written to it (relay_bytes, our own writes).
inline void note_access_in(session* s, std::size_t n) {
  if (s->access == nullptr) return;
  if (s->access->started_ns == 0) s->access->started_ns = uv_hrtime();
  s->access->bytes_in += n;
}
inline void note_access_out(session* s, std::size_t n) {
  if (s->access != nullptr) s->access->bytes_out += n;
}

}  // namespace wslb::worker
