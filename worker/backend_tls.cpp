#include "worker/backend_tls.h"

#include "tls/client_context.h"
#include "worker/backend_connect.h"
#include "worker/connection_flow.h"

namespace wslb::worker {

namespace {

// Writes what the engine produced (handshake messages, alerts, close_notify) to the backend as
// it is. False when the session was closed meanwhile.
bool flush_to_backend(session* s, bool control) {
  std::string& out = s->ctx().tls_io.output();
  if (out.empty()) return true;
  send_raw(s, to_backend, out.data(), out.size(), control);
  out.clear();
  return !s->dead;
}

void relay_plaintext(session* s, tls::engine& e) {
  worker_context& ctx = s->ctx();
  // The records of one read go to the client together (see tls_client_read).
  std::size_t gathered = 0;
  for (;;) {
    const tls::read_result r = e.read(ctx.tls_plain + gathered, sizeof ctx.tls_plain - gathered);
    if (r.status == tls::read_status::failed) {
      ctx.tls_io.output().clear();
      backend_input(s, UV_EPROTO, nullptr);  // a broken stream: as a reset
      return;
    }
    if (!flush_to_backend(s, true)) return;
    if (r.status == tls::read_status::data) {
      gathered += r.len;
      if (sizeof ctx.tls_plain - gathered >= tls::max_record_plaintext) continue;
      backend_input(s, static_cast<ssize_t>(gathered), ctx.tls_plain);
      if (s->dead || !s->backend_tls.is_open()) return;
      gathered = 0;
      continue;
    }
    if (gathered > 0) {
      backend_input(s, static_cast<ssize_t>(gathered), ctx.tls_plain);
      if (s->dead || !s->backend_tls.is_open()) return;
    }
    // close_notify: the backend finished sending.
    if (r.status == tls::read_status::closed) backend_input(s, UV_EOF, nullptr);
    return;
  }
}

}  // namespace

bool start_backend_tls(session* s) {
  worker_context& ctx = s->ctx();
  const backend_config& b = ctx.cfg.backends[s->backend_index];
  if (!b.tls.context || !s->backend_tls.open_client(b.tls.context->native(), ctx.tls_io) ||
      !tls::aim_at_backend(s->backend_tls.native(), b.where.host, b.tls.sni)) {
    s->backend_tls.reset();
    return false;
  }
  // The first read has nothing to read: it writes the ClientHello.
  const tls::read_result r = s->backend_tls.read(ctx.tls_plain, sizeof ctx.tls_plain);
  if (r.status == tls::read_status::failed) {
    ctx.tls_io.output().clear();
    s->backend_tls.reset();
    return false;
  }
  if (!flush_to_backend(s, false)) return true;  // closed: nothing more to do
  return set_reading(s, to_client, true);
}

void backend_tls_read(session* s, ssize_t nread, const char* data) {
  worker_context& ctx = s->ctx();
  tls::engine& e = s->backend_tls;
  if (e.handshake_done()) {
    if (nread < 0) {
      backend_input(s, nread, nullptr);  // a FIN without close_notify ends the stream all the same
      return;
    }
    e.feed(ctx.tls_io, data, static_cast<std::size_t>(nread));
    relay_plaintext(s, e);
    return;
  }
  if (nread < 0) {
    backend_tls_failed(s, nread == UV_EOF ? "closed during the TLS handshake"
                                          : std::string("TLS handshake: ") +
                                                uv_strerror(static_cast<int>(nread)));
    return;
  }
  e.feed(ctx.tls_io, data, static_cast<std::size_t>(nread));
  const tls::read_result r = e.read(ctx.tls_plain, sizeof ctx.tls_plain);
  if (r.status == tls::read_status::failed) {
    // Our alert is not sent: the connection is dropped either way.
    ctx.tls_io.output().clear();
    backend_tls_failed(s, tls::handshake_failure(e.native()));
    return;
  }
  if (!flush_to_backend(s, false)) return;
  if (!e.handshake_done()) return;  // more of the handshake to come
  backend_tls_connected(s);
  if (s->dead || !e.is_open()) return;
  if (r.status == tls::read_status::data) {
    backend_input(s, static_cast<ssize_t>(r.len), ctx.tls_plain);
    if (s->dead || !e.is_open()) return;
  }
  relay_plaintext(s, e);  // what else came with the handshake's last flight
}

void backend_tls_write(session* s, const char* data, std::size_t len, bool control) {
  worker_context& ctx = s->ctx();
  if (!s->backend_tls.handshake_done() || !s->backend_tls.write(data, len)) {
    ctx.tls_io.output().clear();
    close_session(s);
    return;
  }
  flush_to_backend(s, control);
}

void backend_tls_close_notify(session* s) {
  s->backend_tls.close_notify();
  flush_to_backend(s, true);
}

}  // namespace wslb::worker
