#include "worker/access_record.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <new>

#include "common/log.h"
#include "protocol/proxy_protocol.h"
#include "worker/access_line.h"
#include "worker/front_state.h"

namespace wslb::worker {

namespace {

// Longest text kept of each request field: a line stays bounded whatever a client sends
// (a head may be up to --max-header-size).
constexpr std::size_t max_path = 2048;
constexpr std::size_t max_header_text = 512;
constexpr std::size_t max_method = 32;

// Keeps at most `limit` bytes of `text` in `to` (its capacity is reused from request to
// request of a kept-alive connection).
void keep(std::string& to, std::string_view text, std::size_t limit) {
  to.assign(text.substr(0, limit));
}

std::string_view kind_name(const session* s) {
  switch (s->kind) {
    case connection_kind::websocket: return "websocket";
    case connection_kind::http: return "http";
    case connection_kind::tcp: return "tcp";
    case connection_kind::unknown: break;
  }
  return s->ctx().cfg.mode == proxy_mode::tcp ? "tcp" : "http";
}

// The close code of a WebSocket: ours when we closed it (drain, shedding), else the first
// close frame of whoever ended it, else the other side's.
std::uint16_t websocket_close_code(const session* s) {
  if (!s->upgraded) return 0;
  switch (s->cause) {
    case shm::close_cause::drain:
    case shm::close_cause::rebalance:
    case shm::close_cause::evacuate:
      return s->client_close_code != 0 ? s->client_close_code : protocol::close_going_away;
    default: break;
  }
  const std::uint16_t from_client = s->watch.track[to_backend].close_code();
  const std::uint16_t from_backend = s->watch.track[to_client].close_code();
  if (s->cause == shm::close_cause::backend) return from_backend != 0 ? from_backend : from_client;
  return from_client != 0 ? from_client : from_backend;
}

void write_line(session* s, std::string_view close_cause) {
  worker_context& ctx = s->ctx();
  const access_record& r = *s->access;
  access_line line;
  line.time_ms = unix_ms();
  line.client = r.text.client;
  line.forwarded_for = r.text.forwarded_for;
  if (s->backend_index != no_backend_index) line.backend = ctx.backend_names[s->backend_index];
  line.kind = kind_name(s);
  line.method = r.text.method;
  line.path = r.text.path;
  line.host = r.text.host;
  line.user_agent = r.text.user_agent;
  line.status = s->last_status;
  const std::uint64_t now = uv_hrtime();
  line.duration_us = now > r.started_ns ? (now - r.started_ns) / 1000 : 0;
  line.bytes_in = r.bytes_in;
  line.bytes_out = r.bytes_out;
  line.close_cause = close_cause;
  if (!close_cause.empty()) line.ws_close_code = websocket_close_code(s);
  line.worker = ctx.slot;
  // One buffer per process (one loop thread), kept at its size.
  static std::string text;
  text.clear();
  render_access_line(line, text);
  ctx.access.append(text);
}

// "ip:port" of `peer`, brackets around an IPv6 address.
std::string client_text(const sockaddr_storage& peer) {
  char ip[protocol::ip_text_max];
  const std::size_t n = protocol::format_ip(reinterpret_cast<const sockaddr*>(&peer), ip);
  const bool v6 = std::string_view(ip, n).find(':') != std::string_view::npos;
  const std::uint16_t port = ntohs(peer.ss_family == AF_INET6
                                       ? reinterpret_cast<const sockaddr_in6&>(peer).sin6_port
                                       : reinterpret_cast<const sockaddr_in&>(peer).sin_port);
  std::string text;
  text.reserve(n + 8);
  if (v6) text += '[';
  text.append(ip, n);
  if (v6) text += ']';
  text += ':';
  text += std::to_string(port);
  return text;
}

}  // namespace

void open_access_record(session* s, const sockaddr_storage& peer) {
  if (!s->ctx().access.enabled()) return;
  auto* r = new (std::nothrow) access_record{};
  if (r == nullptr) return;  // this connection goes unlogged rather than unserved
  r->started_ns = s->accepted_ns;
  r->text.client = client_text(peer);
  s->access = r;
}

void describe_access_record(const session* s, handover::tunnel_record& rec) {
  const access_record* r = s->access;
  if (r == nullptr) return;
  rec.flags |= handover::flag_access;
  rec.access_started_ns = r->started_ns;
  rec.access_bytes_in = r->bytes_in;
  rec.access_bytes_out = r->bytes_out;
  rec.access = r->text;
}

void forget_access_record(session* s) {
  delete s->access;
  s->access = nullptr;
}

void adopt_access_record(session* s, const handover::tunnel_record& rec, int client_fd) {
  if (!s->ctx().access.enabled()) return;
  auto* r = new (std::nothrow) access_record{};
  if (r == nullptr) return;
  const std::uint64_t now = uv_hrtime();
  if (!(rec.flags & handover::flag_access)) {
    sockaddr_storage peer{};
    socklen_t len = sizeof peer;
    getpeername(client_fd, reinterpret_cast<sockaddr*>(&peer), &len);
    r->started_ns = now;
    r->text.client = client_text(peer);
    s->access = r;
    return;
  }
  // Never after now (a record from a clock that is not this machine's would only shorten it).
  r->started_ns = rec.access_started_ns != 0 ? std::min(rec.access_started_ns, now) : now;
  r->bytes_in = rec.access_bytes_in;
  // What the sender had not written yet is relayed (and counted) again here.
  const std::size_t unwritten = rec.unwritten[to_client].size();
  r->bytes_out = rec.access_bytes_out > unwritten ? rec.access_bytes_out - unwritten : 0;
  r->text = rec.access;
  s->access = r;
}

void note_access_request(session* s) {
  access_record* r = s->access;
  if (r == nullptr) return;
  // A pipelined request read while the previous one was answered: its line starts now.
  if (r->started_ns == 0) r->started_ns = uv_hrtime();
  const protocol::request_head_parser& request = s->hs->request;
  access_text& t = r->text;
  keep(t.method, request.method(), max_method);
  keep(t.path, request.target(), max_path);
  keep(t.host, request.header("host").value_or(""), max_header_text);
  keep(t.user_agent, request.header("user-agent").value_or(""), max_header_text);
  t.forwarded_for.clear();
  if (s->hs->trusted_peer) {
    keep(t.forwarded_for, request.header("x-forwarded-for").value_or(""), max_header_text);
  }
}

void write_request_line(session* s) {
  access_record* r = s->access;
  if (r == nullptr || r->started_ns == 0) return;
  write_line(s, {});
  r->started_ns = 0;
  r->bytes_in = 0;
  r->bytes_out = 0;
  r->text.clear_request();
  s->last_status = 0;
}

void close_access_record(session* s) {
  access_record* r = s->access;
  if (r == nullptr) return;
  if (r->started_ns != 0) write_line(s, shm::close_cause_names[static_cast<std::size_t>(s->cause)]);
  delete r;
  s->access = nullptr;
}

}  // namespace wslb::worker
