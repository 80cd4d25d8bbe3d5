#include "worker/front_state.h"

#include <new>

#include "worker/backend_connect.h"
#include "worker/connect_queue.h"

namespace wslb::worker {

namespace {

void on_timer_closed(uv_handle_t* h) {
  auto* hs = static_cast<front_state*>(h->data);
  session* s = hs->owner;
  delete hs;
  release_handle(s);
}

}  // namespace

bool open_front_state(session* s, const sockaddr_storage& peer) {
  worker_context& ctx = s->ctx();
  auto* hs = new (std::nothrow) front_state(ctx.cfg.max_header_size);
  if (hs == nullptr) return false;
  if (uv_timer_init(&ctx.loop, &hs->timer) != 0) {
    delete hs;
    return false;
  }
  hs->owner = s;
  hs->timer.data = hs;
  hs->peer = peer;
  hs->trusted_peer = in_any(ctx.cfg.trusted_proxies, reinterpret_cast<const sockaddr*>(&peer));
  if (ctx.cfg.balance.mode == balance_mode::source_hash) hs->sticky_key = hash_client_address(peer);
  s->hs = hs;
  ++s->open_handles;
  return true;
}

void release_front_state(session* s) {
  front_state* hs = s->hs;
  if (hs == nullptr) return;
  leave_queue(s);
  s->hs = nullptr;
  uv_timer_stop(&hs->timer);
  uv_close(reinterpret_cast<uv_handle_t*>(&hs->timer), on_timer_closed);
}

}  // namespace wslb::worker
