#include "worker/session.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <new>

#include "common/log.h"
#include "worker/access_record.h"
#include "worker/backend_tls.h"
#include "worker/connection_limits.h"
#include "worker/connection_stats.h"
#include "worker/front_state.h"
#include "worker/row_counters.h"
#include "worker/tls_transport.h"

namespace wslb::worker {

namespace {

constexpr std::uint8_t bit(direction d) { return static_cast<std::uint8_t>(1u << d); }

// How long a graceful close waits for a frame boundary, and then for the peers' FIN.
constexpr std::uint32_t boundary_wait_ms = 1000;
constexpr std::uint32_t close_grace_ms = 500;

std::uint32_t now32(const worker_context& ctx) {
  return static_cast<std::uint32_t>(uv_now(&ctx.loop));
}
// Wrap-safe "t has passed" and "a comes before b" on truncated loop times.
bool reached(std::uint32_t now, std::uint32_t t) {
  return static_cast<std::int32_t>(now - t) >= 0;
}
bool earlier(std::uint32_t a, std::uint32_t b) { return static_cast<std::int32_t>(a - b) < 0; }

void on_session_handle_closed(uv_handle_t* h);
void on_relay_write(uv_write_t* req, int status);
void on_shutdown(uv_shutdown_t* req, int status);

void free_session(session* s) {
  worker_context& ctx = s->ctx();
  if (s->graceful && ctx.graceful_sessions > 0) --ctx.graceful_sessions;
  // A closed connection's bytes are in the table by the time its count drops, so totals read
  // after the close are complete (long-lived ones are flushed on the housekeeping tick).
  if (s->backend_index != no_backend_index) flush_byte_counters(ctx, s->backend_index);
  if (s->source_key != 0) remove_source(ctx.row, s->source_key);
  s->~session();
  std::free(s);
  --ctx.live_sessions;
  counter_sub(ctx.row.connections, 1);
  on_session_released(ctx);
}

void on_session_handle_closed(uv_handle_t* h) {
  session* s = static_cast<session*>(h->data);
  if (h == reinterpret_cast<uv_handle_t*>(&s->backend)) s->backend_open = false;
  release_handle(s);
}

write_chunk* make_chunk(direction d, bool control, const void* data, std::size_t len) {
  void* mem = std::malloc(sizeof(write_chunk) + len);
  if (mem == nullptr) return nullptr;
  auto* c = new (mem) write_chunk{};
  c->len = static_cast<std::uint32_t>(len);
  c->dir = d;
  c->control = control;
  std::memcpy(c->bytes(), data, len);
  return c;
}

void pause_source(session* s, direction d) {
  if (s->paused_mask & bit(d)) return;
  s->paused_mask |= bit(d);
  set_reading(s, d, false);
}

void resume_source(session* s, direction d) {
  if (!(s->paused_mask & bit(d))) return;
  s->paused_mask &= static_cast<std::uint8_t>(~bit(d));
  if (s->eof_mask & bit(d)) return;  // nothing more will come from there
  if (!set_reading(s, d, true)) close_session(s);
}

// Both sides said FIN and both FINs were passed on: nothing is left to relay.
void close_if_finished(session* s) {
  if (s->eof_mask == 3 && s->shut_done_mask == 3) close_session(s);
}

// A WebSocket whose close handshake went through in both directions, with nothing left to
// write: the protocol is over, so one side's FIN ends the whole tunnel (as nginx and HAProxy
// do) instead of being passed on and waited for from the other side too.
bool websocket_finished(session* s) {
  if (!s->upgraded || !s->watch.track[to_backend].saw_close() ||
      !s->watch.track[to_client].saw_close()) {
    return false;
  }
  for (direction d : {to_backend, to_client}) {
    if (s->pending[d] != nullptr || uv_stream_get_write_queue_size(s->stream(d, false)) != 0) {
      return false;
    }
  }
  return true;
}

// Copies `len` bytes into a chunk and queues it to `dest`; null when that failed (nothing is
// left allocated then).
write_chunk* queue_write(session* s, uv_stream_t* dest, direction d, bool control,
                         const void* data, std::size_t len) {
  write_chunk* c = make_chunk(d, control, data, len);
  if (c == nullptr) return nullptr;
  c->req.data = s;
  uv_buf_t b = uv_buf_init(c->bytes(), c->len);
  if (uv_write(&c->req, dest, &b, 1, on_relay_write) != 0) {
    std::free(c);
    return nullptr;
  }
  return c;
}

// Graceful close of direction `d`: our close frame (if upgraded and the stream is still open),
// then FIN. Further input from the source of `d` is read and dropped.
void finish_direction(session* s, direction d) {
  if (s->done_mask & bit(d)) return;
  s->done_mask |= bit(d);
  s->finishing_mask &= static_cast<std::uint8_t>(~bit(d));
  if (s->upgraded && !(s->shut_sent_mask & bit(d)) && s->watch.track[d].at_boundary() &&
      !s->watch.track[d].saw_close()) {
    // Frames towards a server must be masked; towards a client they must not be. A shed
    // client is told to come back (1012) while its backend hears that we are going (1001).
    const std::uint16_t code = d == to_client && s->client_close_code != 0
                                   ? s->client_close_code
                                   : protocol::close_going_away;
    const protocol::close_frame f = protocol::make_close_frame(code, d == to_backend);
    queue_control_write(s, d, f.bytes.data(), f.size);
    if (s->dead) return;
  }
  shut_down(s, d);
  if (s->dead) return;
  if (s->done_mask == 3) {
    set_close_deadline(s, close_grace_ms);
    // Keep reading both sides (and dropping) so that their FIN is seen and no unread data
    // turns our close into a reset.
    resume_source(s, to_backend);
    if (!s->dead) resume_source(s, to_client);
  }
}

// Advances `t` over at most `len` bytes, stopping at the first frame boundary; returns how many
// bytes it consumed. A header split across reads is taken byte by byte (at most 14).
std::size_t advance_to_boundary(protocol::frame_tracker& t, const std::uint8_t* data,
                                std::size_t len) {
  std::size_t used = 0;
  while (used < len && !t.at_boundary()) {
    const std::uint64_t left = t.bytes_to_boundary();
    const std::size_t step =
        left > 0 ? static_cast<std::size_t>(std::min<std::uint64_t>(left, len - used)) : 1;
    t.feed(data + used, step);
    used += step;
  }
  return used;
}

}  // namespace

void relay_bytes(session* s, direction d, const char* data, std::size_t len) {
  if (len == 0) return;
  if (d == to_client) note_access_out(s, len);  // plaintext, as client_input counts it
  if (d == to_client && s->tls.is_open()) {
    tls_write(s, data, len, false);  // encrypted, then send_raw
    return;
  }
  if (d == to_backend && s->backend_tls.is_open()) {
    backend_tls_write(s, data, len, false);
    return;
  }
  send_raw(s, d, data, len, false);
}

void send_raw(session* s, direction d, const char* data, std::size_t len, bool control) {
  if (len == 0) return;
  uv_stream_t* dest = s->stream(d, false);
  if (control) {
    if (queue_write(s, dest, d, true, data, len) == nullptr) close_session(s);
    return;
  }
  // Write straight through first; queue at most one remainder per direction.
  std::size_t written = 0;
  if (s->pending[d] == nullptr) {
    uv_buf_t b = uv_buf_init(const_cast<char*>(data), static_cast<unsigned>(len));
    const int r = uv_try_write(dest, &b, 1);
    if (r >= 0) {
      written = static_cast<std::size_t>(r);
      if (written == len) return;
    } else if (r != UV_EAGAIN && r != UV_ENOSYS) {
      close_session(s);  // the destination is gone (reset, broken pipe)
      return;
    }
  }
  write_chunk* c = queue_write(s, dest, d, false, data + written, len - written);
  if (c == nullptr) {
    close_session(s);
    return;
  }
  s->pending[d] = c;
  pause_source(s, d);
}

void tunnel_bytes(session* s, direction d, const char* data, std::size_t len) {
  worker_context& ctx = s->ctx();
  s->last_active_ms = now32(ctx);
  if (s->done_mask & bit(d)) return;  // graceful close: this direction is finished
  const auto* u = reinterpret_cast<const std::uint8_t*>(data);
  if (s->sniffing && d == to_client) {
    const protocol::sniff_result r = s->watch.sniffer.feed(data, len);
    if (r.status != protocol::sniff_status::need_more) {
      s->sniffing = false;
      if (s->watch.sniffer.switched_protocols()) {
        // Upgraded: from here both directions are WebSocket frames. The client sent nothing
        // after its request (it must wait for the 101), so its stream is at a boundary now.
        s->upgraded = true;
        s->kind = connection_kind::websocket;
        note_upgraded(s);
        new (&s->watch.track[0]) protocol::frame_tracker{};
        new (&s->watch.track[1]) protocol::frame_tracker{};
        s->watch.track[to_client].feed(u + r.head_bytes_in_feed, len - r.head_bytes_in_feed);
      }
    }
  } else if (s->upgraded) {
    if (s->finishing_mask & bit(d)) {
      // Relay up to the boundary; what follows is dropped (our close frame goes there).
      len = advance_to_boundary(s->watch.track[d], u, len);
    } else {
      s->watch.track[d].feed(u, len);
      // Whoever sends the first close frame ends a WebSocket, though the server's FIN comes
      // first (RFC 6455 has the server close the TCP connection).
      if (s->watch.track[d].saw_close()) {
        note_cause(s, d == to_backend ? shm::close_cause::client : shm::close_cause::backend);
      }
    }
  }
  auto& bytes = ctx.unflushed[s->backend_index];
  (d == to_backend ? bytes.in : bytes.out) += len;  // what is relayed, not what was dropped
  relay_bytes(s, d, data, len);
  if (!s->dead && (s->finishing_mask & bit(d)) && s->watch.track[d].at_boundary()) {
    finish_direction(s, d);
  }
}

void tunnel_end(session* s, direction d, ssize_t nread) {
  note_cause(s, d == to_backend ? shm::close_cause::client : shm::close_cause::backend);
  if (nread != UV_EOF) {
    close_session(s);  // reset or another error: nothing more can be relayed
    return;
  }
  s->eof_mask |= bit(d);
  s->paused_mask &= static_cast<std::uint8_t>(~bit(d));
  set_reading(s, d, false);  // libuv stopped reading at EOF; keep the mask in step
  if (s->graceful) {
    // The peer finished first: nothing to wait for in this direction.
    finish_direction(s, d);
    if (!s->dead && s->eof_mask == 3) close_session(s);
    return;
  }
  if (websocket_finished(s)) {
    // A TLS client hears close_notify before the close: OpenSSL keeps a client's session
    // resumable only after a clean TLS close.
    if (s->tls.is_open()) shut_down(s, to_client);
    if (!s->dead && s->backend_tls.is_open()) shut_down(s, to_backend);
    if (!s->dead) close_session(s);
    return;
  }
  shut_down(s, d);
  if (!s->dead) close_if_finished(s);
}

namespace {

void on_relay_write(uv_write_t* req, int status) {
  auto* c = reinterpret_cast<write_chunk*>(req);
  session* s = static_cast<session*>(req->data);
  const direction d = c->dir;
  const bool control = c->control;
  if (!control && s->pending[d] == c) s->pending[d] = nullptr;
  std::free(c);
  if (s->dead) return;
  // A backend connection given up while connecting (a failed TLS handshake, a timeout) has
  // its writes cancelled; the session goes on to the next backend.
  if (status == UV_ECANCELED && d == to_backend && s->at == phase::connecting) return;
  if (status < 0) {
    close_session(s);
    return;
  }
  if (control) return;
  // A slow reader that is still taking bytes is not idle.
  s->last_active_ms = now32(s->ctx());
  resume_source(s, d);
}

void on_shutdown(uv_shutdown_t* req, int status) {
  session* s = static_cast<session*>(req->data);
  const direction d =
      req->handle == reinterpret_cast<uv_stream_t*>(&s->backend) ? to_backend : to_client;
  std::free(req);
  (void)status;  // a failed shutdown leaves nothing more to do for that direction either
  s->shut_done_mask |= bit(d);
  if (s->dead) return;
  if (s->graceful) {
    if (s->eof_mask == 3) close_session(s);
    return;
  }
  close_if_finished(s);
}

}  // namespace

void shut_down(session* s, direction d) {
  if (s->shut_sent_mask & bit(d)) return;
  s->shut_sent_mask |= bit(d);
  if (d == to_client && s->tls.is_open()) {
    tls_close_notify(s);  // queued ahead of the FIN
    if (s->dead) return;
  }
  if (d == to_backend && s->backend_tls.is_open()) {
    backend_tls_close_notify(s);
    if (s->dead) return;
  }
  uv_stream_t* dest = s->stream(d, false);
  uv_os_fd_t fd = -1;
  if (s->pending[d] == nullptr && uv_stream_get_write_queue_size(dest) == 0 &&
      uv_fileno(reinterpret_cast<uv_handle_t*>(dest), &fd) == 0) {
    // Nothing queued: shut down now. uv_shutdown would wait for a writable event first (two
    // epoll changes and a loop turn per FIN, which shows in connection churn).
    ::shutdown(fd, SHUT_WR);
    s->shut_done_mask |= bit(d);
    return;
  }
  auto* req = static_cast<uv_shutdown_t*>(std::malloc(sizeof(uv_shutdown_t)));
  if (req == nullptr) {
    close_session(s);
    return;
  }
  req->data = s;
  if (uv_shutdown(req, s->stream(d, false), on_shutdown) != 0) {
    // Already shut or not connected: that direction is as finished as it will get.
    std::free(req);
    s->shut_done_mask |= bit(d);
  }
}

void release_handle(session* s) {
  if (--s->open_handles == 0 && s->dead) free_session(s);
}

void uncount_backend(session* s) {
  if (!s->counted) return;
  worker_context& ctx = s->ctx();
  counter_sub(ctx.row.backends[ctx.cfg.backends[s->backend_index].row].active, 1);
  s->counted = false;
  place_freed(ctx);
}

void link_session(worker_context& ctx, session* s) {
  s->prev = nullptr;
  s->next = ctx.sessions;
  if (ctx.sessions != nullptr) ctx.sessions->prev = s;
  ctx.sessions = s;
}

void unlink_session(worker_context& ctx, session* s) {
  if (ctx.close_cursor == s) ctx.close_cursor = s->next;
  if (s->prev != nullptr) s->prev->next = s->next;
  else if (ctx.sessions == s) ctx.sessions = s->next;
  if (s->next != nullptr) s->next->prev = s->prev;
  s->prev = s->next = nullptr;
}

session* open_session(worker_context& ctx, int fd) {
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (ctx.cfg.tcp_keepalive) enable_keepalive(fd);
  void* mem = std::malloc(sizeof(session));
  if (mem == nullptr) {
    close(fd);
    return nullptr;
  }
  session* s = new (mem) session{};
  if (uv_tcp_init(&ctx.loop, &s->client) != 0) {
    std::free(mem);
    close(fd);
    return nullptr;
  }
  s->client.data = s;
  s->open_handles = 1;
  ++ctx.live_sessions;
  counter_add(ctx.row.connections, 1);
  counter_add(ctx.row.accepted, 1);
  note_accepted(s);
  link_session(ctx, s);
  if (uv_tcp_open(&s->client, fd) != 0) {
    close(fd);
    close_session(s);
    return nullptr;
  }
  s->last_active_ms = now32(ctx);
  return s;
}

void enable_keepalive(int fd) {
  constexpr int on = 1;
  constexpr int idle_s = 60;
  constexpr int interval_s = 10;
  constexpr int probes = 6;
  // Without it, unacknowledged data would be retransmitted for ~15 minutes (tcp_retries2)
  // before the kernel gives up, and keepalive only probes an idle connection.
  constexpr unsigned user_timeout_ms = (idle_s + interval_s * probes) * 1000;
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle_s, sizeof idle_s);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval_s, sizeof interval_s);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof probes);
  setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms, sizeof user_timeout_ms);
}

void start_tunnel(session* s, bool watch_for_101) {
  release_front_state(s);
  s->at = phase::tunnel;
  if (watch_for_101) {
    s->sniffing = true;
    new (&s->watch.sniffer) protocol::response_sniffer{};
  }
  s->last_active_ms = now32(s->ctx());
  if (s->eof_mask & bit(to_backend)) {
    shut_down(s, to_backend);  // the client finished right after its request
    if (s->dead) return;
  }
  if (!set_reading(s, to_client, true)) {
    close_session(s);
    return;
  }
  if (!(s->paused_mask & bit(to_backend)) && !(s->eof_mask & bit(to_backend)) &&
      !set_reading(s, to_backend, true)) {
    close_session(s);
  }
}

bool set_reading(session* s, direction d, bool on) {
  if (((s->reading_mask & bit(d)) != 0) == on) return true;
  uv_stream_t* source = s->stream(d, true);
  if (on) {
    if (uv_read_start(source, alloc_read_buffer, on_session_read) != 0) return false;
    s->reading_mask |= bit(d);
  } else {
    uv_read_stop(source);
    s->reading_mask &= static_cast<std::uint8_t>(~bit(d));
  }
  return true;
}

void close_session(session* s) {
  if (s->dead) return;
  s->dead = true;
  worker_context& ctx = s->ctx();
  record_end(s);
  close_access_record(s);
  unlink_session(ctx, s);
  uncount_backend(s);
  if (s->hs != nullptr) release_front_state(s);
  end_tls(s);
  s->backend_tls.reset();
  uv_close(reinterpret_cast<uv_handle_t*>(&s->client), on_session_handle_closed);
  if (s->backend_open && !uv_is_closing(reinterpret_cast<uv_handle_t*>(&s->backend))) {
    uv_close(reinterpret_cast<uv_handle_t*>(&s->backend), on_session_handle_closed);
  }
}

void close_session_gracefully(session* s) {
  if (s->dead || s->graceful) return;
  if (!s->relaying()) {
    close_session(s);
    return;
  }
  worker_context& ctx = s->ctx();
  s->graceful = true;
  ++ctx.graceful_sessions;
  set_close_deadline(s, boundary_wait_ms);
  if (s->at != phase::tunnel) {
    // An HTTP exchange: the connection ends once the response is complete (or at the deadline).
    s->hs->close_after_response = true;
    return;
  }
  if (s->sniffing) s->sniffing = false;  // no answer yet: it is not a WebSocket to close politely
  for (direction d : {to_backend, to_client}) {
    if (s->dead) return;
    if (s->upgraded && !(s->eof_mask & bit(d)) && !s->watch.track[d].at_boundary()) {
      // In the middle of a frame: relay up to its end first (the read callback finishes it).
      s->finishing_mask |= bit(d);
      continue;
    }
    finish_direction(s, d);
  }
}

bool queue_control_write(session* s, direction d, const void* data, std::size_t len) {
  if (d == to_client) note_access_out(s, len);
  if (d == to_client && s->tls.is_open()) {
    tls_write(s, static_cast<const char*>(data), len, true);
    return !s->dead;
  }
  if (d == to_backend && s->backend_tls.is_open()) {
    backend_tls_write(s, static_cast<const char*>(data), len, true);
    return !s->dead;
  }
  return queue_write(s, s->stream(d, false), d, true, data, len) != nullptr;
}

void set_close_deadline(session* s, std::uint32_t in_ms) {
  worker_context& ctx = s->ctx();
  s->close_at_ms = now32(ctx) + in_ms;
  if (earlier(s->close_at_ms, ctx.next_close_at_ms)) ctx.next_close_at_ms = s->close_at_ms;
}

void sweep_sessions(worker_context& ctx) {
  const std::uint32_t now = now32(ctx);
  const std::uint32_t idle = ctx.cfg.idle_timeout_ms;
  if (idle == 0 && ctx.graceful_sessions == 0) return;
  // The earliest deadline of the graceful closes still open, for sweep_due_closes.
  std::uint32_t earliest = now + 0x7fffffffu;
  for (session* s = ctx.sessions; s != nullptr;) {
    session* next = s->next;  // s may be unlinked below
    if (s->graceful) {  // closing cleanly, or answered with an error
      if (reached(now, s->close_at_ms)) {
        close_session(s);
      } else if (earlier(s->close_at_ms, earliest)) {
        earliest = s->close_at_ms;
      }
    } else if (idle != 0 && s->relaying() && reached(now, s->last_active_ms + idle)) {
      note_cause(s, shm::close_cause::timeout);
      close_session_gracefully(s);  // gives s a deadline: it counts for `earliest` too
      if (!s->dead && s->graceful && earlier(s->close_at_ms, earliest)) earliest = s->close_at_ms;
    }
    s = next;
  }
  ctx.next_close_at_ms = earliest;
}

void sweep_due_closes(worker_context& ctx) {
  if (ctx.graceful_sessions != 0 && reached(now32(ctx), ctx.next_close_at_ms)) {
    sweep_sessions(ctx);
  }
}

void alloc_read_buffer(uv_handle_t* handle, std::size_t, uv_buf_t* buf) {
  worker_context& ctx = worker_context::of(handle->loop);
  buf->base = ctx.read_buffer;
  buf->len = read_buffer_size;
}

}  // namespace wslb::worker
