#include "worker/backend_connect.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>
#include <string>

#include "common/log.h"
#include "protocol/proxy_protocol.h"
#include "worker/admission.h"
#include "worker/backend_tls.h"
#include "worker/connect_queue.h"
#include "worker/connection_flow.h"
#include "worker/connection_stats.h"
#include "worker/front_state.h"
#include "worker/passive_health.h"
#include "worker/row_counters.h"

namespace wslb::worker {

namespace {

constexpr auto relaxed = std::memory_order_relaxed;
// At most one connect-failure line per backend per second: a dead backend under load would
// otherwise write one line per client.
constexpr std::int64_t failure_log_interval_ms = 1000;

void on_connected(uv_connect_t* req, int status);

std::string describe_connect_error(const worker_context& ctx, std::size_t index, int err) {
  switch (err) {
    case UV_ECONNREFUSED: return "connection refused";
    case UV_ECONNRESET: return "connection reset";
    case UV_ETIMEDOUT:
      return "timeout after " + std::to_string(ctx.cfg.connect_timeout_ms) + " ms" +
             (ctx.cfg.backends[index].tls.enabled ? " (connect and TLS handshake)" : "");
    default: return uv_strerror(err);
  }
}

void log_connect_failure(worker_context& ctx, std::size_t index, const std::string& why) {
  const std::int64_t now = monotonic_ms();
  if (ctx.failure_logged_ms[index] != 0 &&
      now - ctx.failure_logged_ms[index] < failure_log_interval_ms) {
    ++ctx.failures_unlogged[index];
    return;
  }
  if (ctx.failures_unlogged[index] > 0) {
    log_line(ctx.who, "connect %s failed: %s (and %u more in the last second)",
             ctx.backend_names[index].c_str(), why.c_str(), ctx.failures_unlogged[index]);
  } else {
    log_line(ctx.who, "connect %s failed: %s", ctx.backend_names[index].c_str(), why.c_str());
  }
  ctx.failure_logged_ms[index] = now;
  ctx.failures_unlogged[index] = 0;
}

// The session's backend handle is closed: a failed attempt, a kept-alive connection the
// backend closed, or one given up for another backend. A session that is connecting waited for
// the handle (connect_backend reuses it), so it connects now: that covers a request routed
// while the handle of a dropped connection was still closing, not only our own retries.
void on_backend_closed(uv_handle_t* h) {
  session* s = static_cast<session*>(h->data);
  s->backend_open = false;
  const bool connect_now = !s->dead && s->at == phase::connecting;
  release_handle(s);  // frees a dead session
  if (connect_now) connect_backend(s);
}

// A TLS failure says the same thing on every connection (a wrong CA, a name the certificate
// does not carry) until the operator fixes it: one line, and another only when it changes.
void log_tls_failure(worker_context& ctx, std::size_t index, const std::string& why) {
  if (ctx.tls_failure_logged[index] == why) return;
  ctx.tls_failure_logged[index] = why;
  log_line(ctx.who, "connect %s failed: %s (not logged again until it changes)",
           ctx.backend_names[index].c_str(), why.c_str());
}

// The current attempt failed (refused, reset, timed out, the TLS handshake failed, or it
// could not even start). Counts it, feeds passive health when the backend is to blame, and
// moves on to the next backend once the failed socket is closed. `tls_why`: a TLS failure.
void attempt_failed(session* s, int err, bool backend_fault, const std::string& tls_why = {}) {
  worker_context& ctx = s->ctx();
  front_state* hs = s->hs;
  const std::size_t index = s->backend_index;
  const std::size_t row = ctx.cfg.backends[index].row;
  uv_timer_stop(&hs->timer);
  hs->connect_outstanding = false;
  hs->last_error = err;
  counter_add(ctx.row.backends[row].failures, 1);
  uncount_backend(s);
  // Its reads (on during a TLS handshake) end with the handle, and so does its engine.
  set_reading(s, to_client, false);
  s->backend_tls.reset();
  const std::string why = tls_why.empty() ? describe_connect_error(ctx, index, err) : tls_why;
  if (tls_why.empty()) {
    log_connect_failure(ctx, index, why);
  } else {
    log_tls_failure(ctx, index, why);
  }
  // With checks off nobody would ever bring a passively failed backend back: passive marking
  // needs the checker.
  if (backend_fault && ctx.cfg.check.kind != check_kind::none) {
    std::string reason;
    if (note_connect_failure(ctx.table.backends[row], ctx.cfg.check.fall, why, reason)) {
      log_line(ctx.who, "backend %s up -> down: %s", ctx.backend_names[index].c_str(),
               reason.c_str());
    }
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&s->backend), on_backend_closed);
}

void give_up(session* s) {
  front_state* hs = s->hs;
  // Nothing was healthy: 503. Every healthy backend failed: 504 if the last one timed out,
  // else 502 (refused or reset before answering).
  int status = 503;
  if (hs->tried != 0) status = hs->last_error == UV_ETIMEDOUT ? 504 : 502;
  no_backend_connected(s, status);
}

void on_connected(uv_connect_t* req, int status) {
  session* s = static_cast<session*>(req->data);
  if (s->dead) return;
  front_state* hs = s->hs;
  // A cancelled request (we closed the socket after a timeout) was already handled.
  if (hs == nullptr || !hs->connect_outstanding) return;
  hs->connect_outstanding = false;
  if (status != 0) {
    attempt_failed(s, status, true);
    return;
  }
  worker_context& ctx = s->ctx();
  uv_tcp_nodelay(&s->backend, 1);
  uv_os_fd_t fd = -1;
  if (ctx.cfg.tcp_keepalive &&
      uv_fileno(reinterpret_cast<uv_handle_t*>(&s->backend), &fd) == 0) {
    enable_keepalive(fd);
  }
  if (ctx.cfg.backends[s->backend_index].tls.enabled) {
    // The handshake runs under the same connect timeout; the PROXY header goes ahead of it, in
    // the clear, as HAProxy sends it.
    hs->connect_outstanding = true;
    send_proxy_header(s, /*raw=*/true);
    if (s->dead) return;
    if (!start_backend_tls(s)) {
      if (!s->dead) attempt_failed(s, UV_EPROTO, false, "cannot start TLS");
    }
    return;
  }
  uv_timer_stop(&hs->timer);
  note_connect_success(ctx.table.backends[ctx.cfg.backends[s->backend_index].row]);
  backend_connected(s);
}

}  // namespace

void backend_tls_connected(session* s) {
  worker_context& ctx = s->ctx();
  front_state* hs = s->hs;
  uv_timer_stop(&hs->timer);
  hs->connect_outstanding = false;
  ctx.tls_failure_logged[s->backend_index].clear();
  note_connect_success(ctx.table.backends[ctx.cfg.backends[s->backend_index].row]);
  backend_connected(s);
}

void backend_tls_failed(session* s, const std::string& why) {
  if (s->dead || s->hs == nullptr || !s->hs->connect_outstanding) return;
  attempt_failed(s, UV_EPROTO, true, why);
}

void on_connect_timeout(session* s) {
  if (s->hs->queued) {
    on_queue_timeout(s);
    return;
  }
  if (!s->hs->connect_outstanding) return;
  attempt_failed(s, UV_ETIMEDOUT, true);
}

void drop_backend(session* s) {
  uncount_backend(s);
  s->backend_tls.reset();
  if (!s->backend_open || uv_is_closing(reinterpret_cast<uv_handle_t*>(&s->backend))) return;
  // Its reads end with it: the mask must say so, or the next backend connection's reads
  // (backend_connected) would be taken as on already and never start.
  set_reading(s, to_client, false);
  uv_close(reinterpret_cast<uv_handle_t*>(&s->backend), on_backend_closed);
}

namespace {

// The backend a new backend connection gets: the affinity cookie's while it is eligible and
// has a place, else the picker's choice among those not tried, skipping any that has no place
// under its maxconn. `full` says a backend was skipped for that reason.
struct admission {
  std::size_t index = no_backend;
  bool full = false;
};

admission admit(session* s) {
  worker_context& ctx = s->ctx();
  follow_backend_set(ctx);  // a backend added at run time is picked from the next connection on
  front_state* hs = s->hs;
  admission out;
  tried_set excluded = hs->tried;
  const auto take = [&](std::size_t index) {
    const backend_config& b = ctx.cfg.backends[index];
    // Counted from the pick, before the connect completes: a burst of new connections must
    // see each other in least-conn (and in maxconn), not all choose the same backend.
    if (reserve_place(ctx.table, ctx.row, b.row, b.maxconn)) return true;
    out.full = true;
    excluded |= tried_set{1} << index;
    return false;
  };
  const std::uint16_t preferred = hs->preferred;
  if (preferred != no_backend_index && !((excluded >> preferred) & 1u) &&
      ctx.picker.eligible(ctx.table, preferred) && take(preferred)) {
    out.index = preferred;
    return out;
  }
  const std::int64_t now = unix_ms();
  for (;;) {
    const std::size_t index = ctx.picker.pick(ctx.table, excluded, hs->sticky_key, now);
    if (index == no_backend) return out;
    if (take(index)) {
      out.index = index;
      return out;
    }
  }
}

// Connects to `index`, whose place admit() has taken and counted.
void connect_to(session* s, std::size_t index) {
  worker_context& ctx = s->ctx();
  front_state* hs = s->hs;
  hs->tried |= tried_set{1} << index;
  s->backend_index = static_cast<std::uint16_t>(index);
  const backend_config& b = ctx.cfg.backends[index];
  counter_add(ctx.row.backends[b.row].total, 1);
  s->counted = true;
  // Rebalancing in the sticky modes sheds only a connection whose key now maps elsewhere.
  s->has_sticky_key = hs->sticky_key.has_value();
  s->sticky_key = hs->sticky_key.value_or(0);
  s->pinned = index == hs->preferred;
  if (uv_tcp_init(&ctx.loop, &s->backend) != 0) {
    uncount_backend(s);
    hs->last_error = UV_ENOMEM;
    give_up(s);
    return;
  }
  s->backend.data = s;
  s->backend_open = true;
  ++s->open_handles;
  hs->req.data = s;
  note_connect_started(s);
  const int r = uv_tcp_connect(&hs->req, &s->backend,
                               reinterpret_cast<const sockaddr*>(&b.where.addr), on_connected);
  if (r != 0) {
    // Could not even start (out of descriptors, ...): not the backend's fault.
    attempt_failed(s, r, false);
    return;
  }
  hs->connect_outstanding = true;
  uv_timer_start(&hs->timer, on_front_timer, ctx.cfg.connect_timeout_ms, 0);
}

}  // namespace

void connect_backend(session* s) {
  worker_context& ctx = s->ctx();
  if (s->backend_open) {
    // A kept-alive connection whose next request goes to another backend (or one still
    // closing): the old backend connection goes first (its handle is reused), and its close
    // runs this again.
    drop_backend(s);
    return;
  }
  // Those already waiting go first: a newcomer does not take a place freed for them.
  if (ctx.waiting.length > 0) {
    enqueue_for_place(s);
    return;
  }
  const admission a = admit(s);
  if (a.index != no_backend) {
    connect_to(s, a.index);
  } else if (a.full) {
    enqueue_for_place(s);
  } else {
    give_up(s);
  }
}

bool connect_queued(session* s) {
  const admission a = admit(s);
  if (a.index == no_backend && a.full) return false;
  leave_queue(s);
  uv_timer_stop(&s->hs->timer);
  if (a.index != no_backend) {
    connect_to(s, a.index);
  } else {
    give_up(s);
  }
  return true;
}

std::uint64_t hash_client_address(const sockaddr_storage& peer) {
  // The IP as text without the port (an IPv4-mapped IPv6 address as IPv4), as sticky_ring
  // expects: every connection of one client hashes alike.
  char ip[protocol::ip_text_max];
  const std::size_t len = protocol::format_ip(reinterpret_cast<const sockaddr*>(&peer), ip);
  return hash_key(std::string_view(ip, len));
}

}  // namespace wslb::worker
