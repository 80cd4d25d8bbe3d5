#include "worker/http_front.h"

#include <cstdlib>

#include "protocol/http_request.h"
#include "worker/backend_connect.h"
#include "worker/row_counters.h"

namespace wslb::worker {

namespace {

constexpr std::uint32_t answer_linger_ms = 1000;

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

std::optional<std::uint64_t> sticky_key_of(const worker_context& ctx,
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

// Bytes the client sends after its head while the backend is being connected are kept for
// it up to this much; beyond that the client is not read until the tunnel starts.
constexpr std::size_t early_limit = read_buffer_size;

void read_head(session* s, connect_state* hs, const char* data, std::size_t len) {
  const protocol::head_feed_result r = hs->head->feed(data, len);
  if (r.status == protocol::head_status::need_more) return;
  if (r.status == protocol::head_status::error) {
    answer_error(s, r.http_status);
    return;
  }
  // The head is complete. Anything behind it in this read (a request body, or frames a client
  // sent right after its upgrade request) goes to the backend after the head. The client stays
  // readable: reading on costs nothing, stopping and restarting would cost two epoll changes.
  hs->early.assign(data + r.head_bytes_in_feed, len - r.head_bytes_in_feed);
  worker_context& ctx = s->ctx();
  if (auto key = sticky_key_of(ctx, *hs->head)) hs->sticky_key = key;
  uv_timer_stop(&hs->timer);
  // One decision per connection: after this head the connection is a tunnel to the chosen
  // backend. Later requests on a kept-alive connection go to the same backend unparsed (no
  // second balancing, no forwarding headers of their own); see protocol/http_request.h.
  connect_backend(s);
}

}  // namespace

void start_http_front(session* s) {
  worker_context& ctx = s->ctx();
  connect_state* hs = s->hs;
  hs->step = handshake_step::reading_head;
  hs->head = std::make_unique<protocol::request_head_parser>(ctx.cfg.max_header_size);
  uv_timer_start(&hs->timer, on_connect_state_timer, ctx.cfg.handshake_timeout_ms, 0);
  if (!set_reading(s, to_backend, true)) close_session(s);
}

void http_front_read(session* s, ssize_t nread, const uv_buf_t* buf) {
  connect_state* hs = s->hs;
  if (hs == nullptr) {  // answered: waiting for the client to go
    if (nread < 0) close_session(s);  // the client has gone (FIN or reset): done
    return;                           // anything else it sends after our answer is dropped
  }
  if (nread == 0) return;
  if (nread < 0) {
    if (nread == UV_EOF && hs->step == handshake_step::connecting) {
      // A client may finish sending right after its request; the FIN is passed on once the
      // tunnel starts.
      s->eof_mask |= 1u << to_backend;
      set_reading(s, to_backend, false);
      return;
    }
    close_session(s);  // gone before its request was complete: nobody to answer
    return;
  }
  const std::size_t len = static_cast<std::size_t>(nread);
  if (hs->step == handshake_step::reading_head) {
    read_head(s, hs, buf->base, len);
    return;
  }
  hs->early.append(buf->base, len);
  if (hs->early.size() >= early_limit) set_reading(s, to_backend, false);
}

void on_handshake_timeout(session* s) { answer_error(s, 408); }

void answer_error(session* s, int status) {
  worker_context& ctx = s->ctx();
  counter_add(ctx.row.errors[static_cast<std::size_t>(kind_of(status))], 1);
  release_connect_state(s);
  if (s->backend_open) {
    close_session(s);  // not reached today: answers are given before or between connects
    return;
  }
  auto* client = reinterpret_cast<uv_stream_t*>(&s->client);
  const std::string_view answer = protocol::error_response(status);
  if (!queue_control_write(s, client, to_client, answer.data(), answer.size())) {
    close_session(s);
    return;
  }
  shut_down(s, to_client);
  if (s->dead) return;
  s->graceful = true;
  ++ctx.graceful_sessions;
  set_close_deadline(s, answer_linger_ms);
  // Read on (and drop) until the client goes, so that our close does not reset the answer.
  if (!set_reading(s, to_backend, true)) close_session(s);
}

}  // namespace wslb::worker
