#include "worker/tls_transport.h"

#include <malloc.h>

#include <cstring>

#include "common/log.h"
#include "tls/server_context.h"
#include "worker/acceptor.h"
#include "worker/connection_flow.h"
#include "worker/front_state.h"
#include "worker/row_counters.h"

namespace wslb::worker {

namespace {

static_assert(sizeof(worker_context::tls_plain) >= tls::max_record_plaintext,
              "a parked connection decrypts whole records into the loop's plaintext buffer");

// A client that speaks plain HTTP to the TLS port starts with a method: "GET /", "POST /".
// A TLS record starts with a content type byte (0x14-0x18), never a capital letter.
bool looks_like_plain_http(const char* data, std::size_t len) {
  std::size_t i = 0;
  while (i < len && i < 8 && data[i] >= 'A' && data[i] <= 'Z') ++i;
  return i >= 3 && i < len && data[i] == ' ';
}

void handshake_over(session* s) {
  if (!s->tls_handshaking) return;
  s->tls_handshaking = false;
  worker_context& ctx = s->ctx();
  --ctx.tls_handshakes_in_progress;
  on_handshake_finished(ctx);
}

// Writes what the engine produced (handshake messages, tickets, alerts) to the client as it
// is. False when the session was closed meanwhile (the client is gone).
bool flush_engine_output(session* s) {
  std::string& out = s->ctx().tls_io.output();
  if (out.empty()) return true;
  send_raw(s, to_client, out.data(), out.size(), true);
  out.clear();
  return !s->dead;
}

void fail_handshake(session* s, const char* why) {
  worker_context& ctx = s->ctx();
  counter_add(ctx.row.tls_failed, 1);
  handshake_over(s);
  ctx.tls_io.output().clear();  // an alert for a peer that is not speaking TLS: not worth it
  (void)why;
  close_session(s);
}

}  // namespace

bool start_tls(session* s) {
  worker_context& ctx = s->ctx();
  if (!s->tls.open(ctx.cfg.tls.server->default_context(), ctx.tls_io)) return false;
  s->at = phase::tls_handshake;
  s->tls_handshaking = true;
  ++ctx.tls_handshakes_in_progress;
  uv_timer_start(&s->hs->timer, on_front_timer, ctx.cfg.handshake_timeout_ms, 0);
  return set_reading(s, to_backend, true);
}

void tls_client_read(session* s, ssize_t nread, const char* data) {
  worker_context& ctx = s->ctx();
  if (nread < 0) {
    if (s->tls_handshaking) {
      // Gone mid-handshake (or reset): nothing to say to it.
      counter_add(ctx.row.tls_abandoned, 1);
      handshake_over(s);
      close_session(s);
      return;
    }
    client_input(s, nread, nullptr);  // a FIN without close_notify: the stream ends all the same
    return;
  }
  const auto len = static_cast<std::size_t>(nread);
  if (s->tls_handshaking && !s->tls.handshake_started() && looks_like_plain_http(data, len)) {
    // Plain HTTP to the TLS port: a short plain answer (as nginx gives), then the close.
    counter_add(ctx.row.tls_failed, 1);
    handshake_over(s);
    s->tls.reset();
    answer_error(s, 400);
    return;
  }
  s->tls.feed(ctx.tls_io, data, len);
  // The records of one read are gathered and passed on together, as a plaintext read would
  // be: one write to the backend, not one per record.
  std::size_t gathered = 0;
  for (;;) {
    const tls::read_result r = s->tls.read(ctx.tls_plain + gathered, sizeof ctx.tls_plain - gathered);
    if (r.status == tls::read_status::failed) {
      if (s->tls_handshaking) return fail_handshake(s, "handshake");
      flush_engine_output(s);  // the alert, then the close
      if (!s->dead) close_session(s);
      return;
    }
    if (!flush_engine_output(s)) return;
    if (s->tls_handshaking && s->tls.handshake_done()) {
      counter_add(ctx.row.tls_handshakes, 1);
      if (s->tls.resumed()) counter_add(ctx.row.tls_resumed, 1);
      handshake_over(s);
      start_connection_flow(s);
      if (s->dead) return;
    }
    switch (r.status) {
      case tls::read_status::data:
        gathered += r.len;
        if (sizeof ctx.tls_plain - gathered >= tls::max_record_plaintext) continue;
        client_input(s, static_cast<ssize_t>(gathered), ctx.tls_plain);
        if (s->dead) return;
        gathered = 0;
        continue;
      default:
        break;
    }
    if (gathered > 0) {
      client_input(s, static_cast<ssize_t>(gathered), ctx.tls_plain);
      if (s->dead) return;
    }
    // close_notify: the client finished sending. Otherwise everything fed was used; more
    // comes with the next read.
    if (r.status == tls::read_status::closed) client_input(s, UV_EOF, nullptr);
    return;
  }
}

void tls_handshake_timed_out(session* s) {
  counter_add(s->ctx().row.tls_abandoned, 1);
  handshake_over(s);
  close_session(s);
}

void tls_write(session* s, const char* data, std::size_t len, bool control) {
  worker_context& ctx = s->ctx();
  if (!s->tls.handshake_done() || !s->tls.write(data, len)) {
    ctx.tls_io.output().clear();
    close_session(s);
    return;
  }
  std::string& out = ctx.tls_io.output();
  send_raw(s, to_client, out.data(), out.size(), control);
  out.clear();
}

void tls_close_notify(session* s) {
  s->tls.close_notify();
  flush_engine_output(s);
}

void end_tls(session* s) {
  handshake_over(s);
  if (s->tls.parked()) counter_sub(s->ctx().row.tls_parked, 1);
  s->tls.reset();
}

void park_idle_tls(worker_context& ctx) {
  const std::uint32_t after = ctx.cfg.tls.park_after_ms;
  if (!ctx.cfg.tls.server || after == 0) return;
  const auto now = static_cast<std::uint32_t>(uv_now(&ctx.loop));
  std::uint64_t parked = 0;
  for (session* s = ctx.sessions; s != nullptr; s = s->next) {
    if (s->dead || s->tls_handshaking || !s->tls.may_park()) continue;
    if (now - s->last_active_ms < after) continue;
    if (s->tls.park()) ++parked;
  }
  if (parked == 0) return;
  counter_add(ctx.row.tls_parked, parked);
  // Each SSL object was about 30 allocations between the session's own; glibc keeps freed
  // chunks in its bins and returns only the top of the heap by itself. malloc_trim also
  // gives back the whole pages inside the heap that are now free (MADV_DONTNEED), so the
  // saving shows in the worker's memory, not only in malloc's free lists.
  malloc_trim(0);
}

}  // namespace wslb::worker
