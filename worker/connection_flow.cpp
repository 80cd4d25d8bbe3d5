#include "worker/connection_flow.h"

#include <string>

#include "protocol/http_response.h"
#include "protocol/proxy_protocol.h"
#include "worker/access_record.h"
#include "worker/backend_connect.h"
#include "worker/backend_tls.h"
#include "worker/connection_limits.h"
#include "worker/connection_stats.h"
#include "worker/front_state.h"
#include "worker/row_counters.h"
#include "worker/tls_transport.h"

namespace wslb::worker {

namespace {

// The session's per-direction masks by direction: to_backend (bytes from the client) and
// to_client (bytes from the backend, and our FIN towards the client).
constexpr std::uint8_t client_to_backend = 1u << to_backend;
constexpr std::uint8_t backend_to_client = 1u << to_client;

// How long a connection that is done (error answer, or its last response) waits for the
// client to go after our FIN: short for our small answers, longer for a response that may
// still be on its way to a slow reader.
constexpr std::uint32_t answer_linger_ms = 1000;
constexpr std::uint32_t response_linger_ms = 30'000;
// Client bytes kept while they cannot be handled yet (connecting, upgrading, a response still
// coming); beyond that the client is not read until they are.
constexpr std::size_t unread_limit = read_buffer_size;

shm::error_kind kind_of(int status) {
  switch (status) {
    case 400: return shm::error_kind::bad_request_400;
    case 408: return shm::error_kind::request_timeout_408;
    case 426: return shm::error_kind::upgrade_required_426;
    case 431: return shm::error_kind::header_too_large_431;
    case 502: return shm::error_kind::bad_gateway_502;
    case 504: return shm::error_kind::gateway_timeout_504;
    default: return shm::error_kind::no_backend_503;
  }
}

std::uint32_t now32(const session* s) { return static_cast<std::uint32_t>(uv_now(&s->ctx().loop)); }

void handle_client_bytes(session* s, const char* data, std::size_t len);

// ---- accept, and waiting for a request head ------------------------------------------------

// Reading the client is on in every HTTP phase (what cannot be handled yet waits in `unread`),
// unless the client finished, a write to the backend is backed up, or `unread` is full.
void keep_reading_client(session* s) {
  if (s->dead || (s->eof_mask & client_to_backend) || (s->paused_mask & client_to_backend)) return;
  if (s->hs != nullptr && s->hs->unread.size() >= unread_limit) return;
  if (!set_reading(s, to_backend, true)) close_session(s);
}

// Handles what the client sent while it could not be handled (the next request of a
// pipelining client, a body sent while connecting).
void replay_unread(session* s) {
  front_state* hs = s->hs;
  if (!hs->unread.empty()) {
    const std::string pending = std::move(hs->unread);
    hs->unread.clear();
    handle_client_bytes(s, pending.data(), pending.size());
  }
  if (!s->dead && s->at != phase::answered) keep_reading_client(s);
}

// Stage: head. Waits for the next request head, for at most the handshake timeout.
void await_request(session* s) {
  worker_context& ctx = s->ctx();
  front_state* hs = s->hs;
  s->at = phase::reading_head;
  hs->request.reset();
  hs->request_done = false;
  hs->cookie_due = false;
  uv_timer_start(&hs->timer, on_front_timer, ctx.cfg.handshake_timeout_ms, 0);
  replay_unread(s);
}

void keep_unread(session* s, const char* data, std::size_t len) {
  std::string& unread = s->hs->unread;
  unread.append(data, len);
  if (unread.size() >= unread_limit) set_reading(s, to_backend, false);
}

// The connection is done: what is queued to the client goes, then our FIN, and the client
// gets `linger_ms` to go (its further bytes are dropped).
void end_connection(session* s, std::uint32_t linger_ms) {
  worker_context& ctx = s->ctx();
  s->at = phase::answered;
  drop_backend(s);
  release_front_state(s);
  s->eof_mask |= backend_to_client;  // nothing more comes from a backend
  shut_down(s, to_client);
  if (s->dead) return;
  if (!s->graceful) {
    s->graceful = true;
    ++ctx.graceful_sessions;
  }
  set_close_deadline(s, linger_ms);
  if (s->eof_mask & client_to_backend) {
    // Done once our FIN is out; else on_shutdown closes it.
    if (s->shut_done_mask & backend_to_client) close_session(s);
    return;
  }
  // Read on (and drop) until the client goes, so that our close does not reset the answer.
  if (!set_reading(s, to_backend, true)) close_session(s);
}

// ---- pick, connect, forward -----------------------------------------------------------------

std::optional<std::uint64_t> request_key(const worker_context& ctx,
                                         const protocol::request_head_parser& head) {
  std::optional<std::string_view> key;
  switch (ctx.cfg.balance.mode) {
    case balance_mode::header: key = head.header(ctx.cfg.balance.key); break;
    case balance_mode::cookie: key = head.cookie(ctx.cfg.balance.key); break;
    case balance_mode::query: key = head.query_param(ctx.cfg.balance.key); break;
    default: return std::nullopt;
  }
  if (!key) return std::nullopt;
  return hash_key(*key);
}

// May the request go over the backend connection the session already has?
bool open_backend_fits(session* s) {
  worker_context& ctx = s->ctx();
  front_state* hs = s->hs;
  if (!s->backend_open || !s->counted) return false;
  const std::size_t current = s->backend_index;
  if (!ctx.picker.eligible(ctx.table, current)) return false;
  if (hs->preferred != no_backend_index) return hs->preferred == current;
  if (hs->sticky_key && ctx.cfg.balance.mode != balance_mode::source_hash) {
    return ctx.picker.pick(ctx.table, 0, hs->sticky_key) == current;
  }
  return true;
}

// Stage: forward. Sends the rewritten head; the body and the response follow as they come.
void forward_request(session* s) {
  worker_context& ctx = s->ctx();
  front_state* hs = s->hs;
  const protocol::request_head_parser& request = hs->request;
  char ip[protocol::ip_text_max];
  const std::size_t ip_len = protocol::format_ip(reinterpret_cast<const sockaddr*>(&hs->peer), ip);
  const protocol::forwarding f{ctx.cfg.forward_headers, std::string_view(ip, ip_len),
                               hs->trusted_peer, ctx.cfg.tls.enabled()};
  // One pass: what we add is at most the client's head again (a trusted peer's chains) plus
  // a few short lines. The buffer is the process's own (one loop thread) and keeps its size.
  static std::string head;
  head.resize(2 * request.head().size() + 512);
  std::size_t n = request.write_forwarded_head(head.data(), head.size(), f);
  if (n == 0) {  // not expected; sized exactly then
    head.resize(request.forwarded_head_size(f));
    n = request.write_forwarded_head(head.data(), head.size(), f);
  }
  head.resize(n);
  ++s->requests;
  ctx.unflushed[s->backend_index].in += head.size();
  hs->request_done = hs->request.start_body();
  hs->response.expect(request.is_head_method(), request.is_websocket_upgrade());
  hs->cookie_due = ctx.affinity.enabled() && s->backend_index != hs->preferred;
  s->at = request.is_websocket_upgrade() ? phase::upgrading : phase::exchanging;
  s->last_active_ms = now32(s);
  relay_bytes(s, to_backend, head.data(), head.size());
  if (s->dead) return;
  replay_unread(s);
}

// Stage: pick. A complete, valid request head: to the backend connection the session has, or
// to a newly picked and connected one.
void route_request(session* s) {
  worker_context& ctx = s->ctx();
  front_state* hs = s->hs;
  uv_timer_stop(&hs->timer);
  note_access_request(s);
  hs->tried = 0;
  hs->last_error = 0;
  hs->preferred = no_backend_index;
  if (ctx.affinity.enabled()) {
    // A valid affinity cookie names the backend; connect_backend falls back to balancing
    // when that backend is down or removed, and the response then carries a new cookie.
    if (const auto value = hs->request.cookie(ctx.affinity.name())) {
      const int index = ctx.affinity.backend_of(*value);
      if (index >= 0) hs->preferred = static_cast<std::uint16_t>(index);
    }
  }
  if (ctx.cfg.balance.mode != balance_mode::source_hash) {
    hs->sticky_key = request_key(ctx, hs->request);
  }
  if (!hs->request.keep_alive() || ctx.phase != worker_phase::running) {
    hs->close_after_response = true;  // a draining worker ends kept-alive connections
  }
  if (open_backend_fits(s)) {
    forward_request(s);
    return;
  }
  s->at = phase::connecting;
  connect_backend(s);
}

// ---- relay: request bodies, responses -------------------------------------------------------

void relay_to_client(session* s, const char* data, std::size_t len) {
  s->ctx().unflushed[s->backend_index].out += len;
  relay_bytes(s, to_client, data, len);
}

// Every client byte outside the tunnel: request heads, bodies, and what must wait.
void handle_client_bytes(session* s, const char* data, std::size_t len) {
  while (len > 0 && !s->dead) {
    front_state* hs = s->hs;
    switch (s->at) {
      case phase::reading_head: {
        const protocol::head_feed_result r = hs->request.feed(data, len);
        if (r.status == protocol::head_status::need_more) return;
        if (r.status == protocol::head_status::error) {
          answer_error(s, r.http_status);
          return;
        }
        data += r.head_bytes_in_feed;
        len -= r.head_bytes_in_feed;
        route_request(s);
        break;
      }
      case phase::exchanging:
        if (!hs->request_done) {
          const protocol::body_feed_result b = hs->request.feed_body(data, len);
          if (b.error) {  // bad chunked framing: the rest cannot be delimited
            close_session(s);
            return;
          }
          s->ctx().unflushed[s->backend_index].in += b.consumed;
          relay_bytes(s, to_backend, data, b.consumed);
          data += b.consumed;
          len -= b.consumed;
          hs->request_done = b.done;
          break;
        }
        keep_unread(s, data, len);  // the next request: read once this response is complete
        return;
      case phase::connecting:
      case phase::upgrading:
        keep_unread(s, data, len);
        return;
      case phase::tunnel:
      case phase::answered:
      case phase::tls_handshake:  // not reached: the flow starts after the handshake
        return;
    }
  }
}

// The response is complete: the next request, or the end of the connection.
void response_done(session* s) {
  front_state* hs = s->hs;
  // A response that came before its request's body was all sent (an early 413): the rest of
  // the body would be read as the next request, so the connection ends here.
  const bool kept_alive = hs->request_done && hs->request.keep_alive() &&
                          hs->response.keep_alive() && !(s->eof_mask & client_to_backend);
  const bool draining = s->ctx().phase != worker_phase::running;
  if (!kept_alive || hs->close_after_response || draining) {
    // Both ends would go on: it ends because this worker drains, and is counted so.
    if (kept_alive && draining) note_cause(s, shm::close_cause::drain);
    end_connection(s, response_linger_ms);
    return;
  }
  write_request_line(s);
  await_request(s);
}

// The backend's answer cannot be followed (not HTTP, malformed, cut short): 502 while nothing
// of it reached the client, else the connection is cut.
void response_failed(session* s) {
  if (!s->hs->response.started()) {
    answer_error(s, 502);
    return;
  }
  close_session(s);
}

// Stage: tunnel. The backend answered 101: from here both directions are WebSocket frames;
// `rest` (after the 101's head) and what the client sent while waiting go through the frame
// trackers like everything after them.
void switch_to_tunnel(session* s, const char* rest, std::size_t len) {
  s->kind = connection_kind::websocket;
  s->upgraded = true;
  new (&s->watch.track[0]) protocol::frame_tracker{};
  new (&s->watch.track[1]) protocol::frame_tracker{};
  const std::string early = std::move(s->hs->unread);
  if (len > 0) tunnel_bytes(s, to_client, rest, len);
  if (!s->dead && !early.empty()) tunnel_bytes(s, to_backend, early.data(), early.size());
  if (!s->dead) start_tunnel(s, false);
}

void handle_backend_bytes(session* s, const char* data, std::size_t len) {
  front_state* hs = s->hs;
  s->last_active_ms = now32(s);
  if (s->at != phase::exchanging && s->at != phase::upgrading) {
    drop_backend(s);  // bytes nobody asked for: that backend connection cannot be trusted
    return;
  }
  // What has been read through goes to the client in one write where it can: a response
  // whose head and body arrive together costs one send, not one per step.
  const char* ready = data;
  const auto flush = [&] {
    if (data != ready && !s->dead) relay_to_client(s, ready, static_cast<std::size_t>(data - ready));
    ready = data;
  };
  while (len > 0 && !s->dead) {
    const protocol::response_step r = hs->response.feed(data, len);
    if (r.event == protocol::response_event::error) {
      response_failed(s);
      return;
    }
    data += r.consumed;
    len -= r.consumed;
    switch (r.event) {
      case protocol::response_event::error:
      case protocol::response_event::need_more:
      case protocol::response_event::interim:
        break;
      case protocol::response_event::status_line:
        if (hs->cookie_due && (hs->response.status() >= 200 || hs->response.status() == 101)) {
          // Our header goes right behind the status line of the final answer (or the 101).
          hs->cookie_due = false;
          flush();
          const std::string_view line = s->ctx().affinity.set_cookie_line(s->backend_index);
          if (!s->dead) relay_to_client(s, line.data(), line.size());
        }
        break;
      case protocol::response_event::done:
        flush();
        if (s->dead) return;
        s->last_status = static_cast<std::uint16_t>(hs->response.status());
        if (len != 0) {
          close_session(s);  // bytes after the response, before any request: not HTTP/1.1
          return;
        }
        response_done(s);
        return;
      case protocol::response_event::switched:
        flush();
        s->last_status = 101;
        note_upgraded(s);
        if (!s->dead) switch_to_tunnel(s, data, len);
        return;
    }
  }
  flush();
}

// The client sent FIN (or failed) outside the tunnel.
void client_finished(session* s, ssize_t nread) {
  note_cause(s, shm::close_cause::client);
  if (nread != UV_EOF) {
    close_session(s);  // reset: nobody left to answer
    return;
  }
  s->eof_mask |= client_to_backend;
  set_reading(s, to_backend, false);  // libuv stopped reading at EOF; keep the mask in step
  switch (s->at) {
    case phase::answered:
      if (s->shut_done_mask & backend_to_client) close_session(s);  // else when our FIN is out
      return;
    case phase::reading_head:
      close_session(s);  // between requests, or before a complete head: nothing to answer
      return;
    case phase::exchanging:
      if (!s->hs->request_done) close_session(s);  // the request was cut short
      return;  // else the response still goes back, then the connection ends
    case phase::connecting:
    case phase::upgrading:
    case phase::tunnel:
      return;  // the response still goes back (tcp mode: start_tunnel passes the FIN on)
    case phase::tls_handshake:
      close_session(s);  // not reached: the TLS layer ends a handshake the client abandons
      return;
  }
}

// The backend sent FIN (or failed) outside the tunnel.
void backend_finished(session* s, ssize_t nread) {
  if (s->at != phase::exchanging && s->at != phase::upgrading) {
    drop_backend(s);  // it closed an idle kept-alive connection: the next request reconnects
    return;
  }
  note_cause(s, shm::close_cause::backend);
  if (nread == UV_EOF && s->hs->response.finish().event == protocol::response_event::done) {
    s->last_status = static_cast<std::uint16_t>(s->hs->response.status());
    s->hs->close_after_response = true;  // close-delimited: the client learns the end by our FIN
    response_done(s);
    return;
  }
  response_failed(s);
}

// Our own answer (or, tcp mode, a close) for a connection we will not serve; counted by kind.
// `answer` defaults to the plain one for `status`.
void refuse(session* s, int status, shm::error_kind kind, std::string_view answer = {}) {
  worker_context& ctx = s->ctx();
  counter_add(ctx.row.errors[static_cast<std::size_t>(kind)], 1);
  note_cause(s, status == 408 ? shm::close_cause::timeout : shm::close_cause::error);
  s->last_status = static_cast<std::uint16_t>(status);
  if (ctx.cfg.mode == proxy_mode::tcp) {
    close_session(s);
    return;
  }
  if (answer.empty()) answer = protocol::error_response(status);
  if (!queue_control_write(s, to_client, answer.data(), answer.size())) {
    close_session(s);
    return;
  }
  end_connection(s, answer_linger_ms);
}

// --max-connections, --max-connections-per-source: false (and the client refused) when over.
bool within_limits(session* s, const sockaddr_storage& peer) {
  worker_context& ctx = s->ctx();
  // This connection is already in the row's count.
  if (ctx.cfg.max_connections != 0 && instance_connections(ctx.table) > ctx.cfg.max_connections) {
    refuse(s, 503, shm::error_kind::connection_limit);
    return false;
  }
  if (ctx.cfg.max_connections_per_source == 0) return true;
  const std::uint64_t key = source_key(peer);
  if (source_connections(ctx.table, key) >= ctx.cfg.max_connections_per_source) {
    refuse(s, 503, shm::error_kind::source_limit);
    return false;
  }
  if (add_source(ctx.row, key)) s->source_key = key;
  return true;
}

void tunnel_read(session* s, direction d, ssize_t nread, const char* data) {
  if (nread > 0) {
    tunnel_bytes(s, d, data, static_cast<std::size_t>(nread));
  } else {
    tunnel_end(s, d, nread);
  }
}

}  // namespace

// ---- the entry points, in the order a connection meets them --------------------------------

void start_session(worker_context& ctx, int fd, const sockaddr_storage& peer) {
  session* s = open_session(ctx, fd);
  if (s == nullptr) return;
  open_access_record(s, peer);
  if (!within_limits(s, peer)) return;
  if (!open_front_state(s, peer)) {
    close_session(s);
    return;
  }
  if (ctx.cfg.tls.server) {
    // TLS first: the flow starts once the handshake is done (tls_transport.cpp).
    if (!start_tls(s)) close_session(s);
    return;
  }
  start_connection_flow(s);
}

void start_connection_flow(session* s) {
  if (s->ctx().cfg.mode == proxy_mode::tcp) {
    s->kind = connection_kind::tcp;
    s->at = phase::connecting;
    connect_backend(s);
    return;
  }
  s->kind = connection_kind::http;
  await_request(s);
}

void close_idle_keepalive(worker_context& ctx) {
  for (session* s = ctx.sessions; s != nullptr;) {
    session* next = s->next;  // close_session unlinks s
    if (s->at == phase::reading_head && s->requests > 0 && !s->hs->request.started()) {
      note_cause(s, shm::close_cause::drain);
      close_session(s);
    }
    s = next;
  }
}

void on_front_timer(uv_timer_t* t) {
  auto* hs = static_cast<front_state*>(t->data);
  session* s = hs->owner;
  if (s->dead) return;
  if (s->at == phase::tls_handshake) {
    tls_handshake_timed_out(s);
  } else if (s->at == phase::connecting) {
    on_connect_timeout(s);
  } else if (s->at == phase::reading_head) {
    // A kept-alive connection that stays quiet between requests is closed without an answer,
    // as nginx and HAProxy do; a request that never completes gets 408.
    if (s->requests > 0 && !hs->request.started()) {
      close_session(s);
    } else {
      answer_error(s, 408);
    }
  }
}

void on_session_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  session* s = static_cast<session*>(stream->data);
  if (s->dead || nread == 0) return;
  if (stream == reinterpret_cast<uv_stream_t*>(&s->client)) {
    if (s->tls.is_open()) {
      tls_client_read(s, nread, buf->base);  // ciphertext: the plaintext comes to client_input
    } else {
      client_input(s, nread, buf->base);
    }
  } else if (s->backend_tls.is_open()) {
    backend_tls_read(s, nread, buf->base);  // ciphertext: the plaintext comes to backend_input
  } else {
    backend_input(s, nread, buf->base);
  }
}

void client_input(session* s, ssize_t nread, const char* data) {
  if (nread > 0) note_access_in(s, static_cast<std::size_t>(nread));
  if (s->at == phase::tunnel) {
    tunnel_read(s, to_backend, nread, data);
    return;
  }
  if (nread < 0) {
    client_finished(s, nread);
    return;
  }
  if (s->at == phase::answered) return;  // after our answer, dropped
  s->last_active_ms = now32(s);
  handle_client_bytes(s, data, static_cast<std::size_t>(nread));
}

void backend_input(session* s, ssize_t nread, const char* data) {
  if (s->at == phase::tunnel) {
    tunnel_read(s, to_client, nread, data);
    return;
  }
  if (s->at == phase::answered) return;
  if (nread < 0) {
    backend_finished(s, nread);
    return;
  }
  handle_backend_bytes(s, data, static_cast<std::size_t>(nread));
}

void send_proxy_header(session* s, bool raw) {
  worker_context& ctx = s->ctx();
  if (ctx.cfg.proxy_proto == proxy_protocol::off) return;
  // Once per backend connection, before anything else on it.
  sockaddr_storage local{};
  int len = sizeof local;
  uv_tcp_getsockname(&s->client, reinterpret_cast<sockaddr*>(&local), &len);
  std::uint8_t header[protocol::proxy_header_max];
  const std::size_t n = protocol::write_proxy_header(
      ctx.cfg.proxy_proto == proxy_protocol::v1 ? protocol::proxy_version::v1
                                                : protocol::proxy_version::v2,
      reinterpret_cast<const sockaddr*>(&s->hs->peer), reinterpret_cast<const sockaddr*>(&local),
      header, sizeof header);
  ctx.unflushed[s->backend_index].in += n;
  const char* bytes = reinterpret_cast<const char*>(header);
  if (raw) {
    send_raw(s, to_backend, bytes, n, false);
  } else {
    relay_bytes(s, to_backend, bytes, n);
  }
}

void backend_connected(session* s) {
  note_connected(s);
  worker_context& ctx = s->ctx();
  front_state* hs = s->hs;
  // A TLS backend had its header ahead of the handshake.
  if (!s->backend_tls.is_open()) {
    send_proxy_header(s, false);
    if (s->dead) return;
  }
  if (ctx.cfg.mode == proxy_mode::tcp) {
    // What the client sent while the backend was being connected goes first (over TLS the
    // client is read from the handshake on, and its first bytes may come with its Finished).
    if (!hs->unread.empty()) {
      const std::string early = std::move(hs->unread);
      hs->unread.clear();
      ctx.unflushed[s->backend_index].in += early.size();
      relay_bytes(s, to_backend, early.data(), early.size());
      if (s->dead) return;
    }
    start_tunnel(s, /*watch_for_101=*/true);
    return;
  }
  // The backend is read from now on: its responses, and its FIN on an idle connection.
  if (!set_reading(s, to_client, true)) {
    close_session(s);
    return;
  }
  forward_request(s);
}

void no_backend_connected(session* s, int http_status) {
  worker_context& ctx = s->ctx();
  if (ctx.cfg.mode == proxy_mode::http) {
    answer_error(s, http_status);
    return;
  }
  if (http_status == 503) {
    counter_add(ctx.row.errors[static_cast<std::size_t>(shm::error_kind::no_backend_tcp_close)], 1);
  }
  close_session(s);
}

void answer_error(session* s, int status) { refuse(s, status, kind_of(status)); }

void answer_busy(session* s, std::uint32_t queue_timeout_ms) {
  const std::uint32_t seconds = queue_timeout_ms < 1000 ? 1 : (queue_timeout_ms + 999) / 1000;
  refuse(s, 503, shm::error_kind::queue_timeout_503, protocol::busy_response(seconds));
}

}  // namespace wslb::worker
