#include "worker/connect_queue.h"

#include "worker/backend_connect.h"
#include "worker/connection_flow.h"
#include "worker/front_state.h"
#include "worker/row_counters.h"
#include "worker/session.h"

namespace wslb::worker {

namespace {

// Places freed by other workers are not signalled to this one: while clients wait, the queue
// looks again this often.
constexpr std::uint64_t retry_tick_ms = 20;

void set_queued_count(worker_context& ctx) {
  ctx.row.queued.store(static_cast<std::uint32_t>(ctx.waiting.length), std::memory_order_relaxed);
}

void serve_queue(uv_timer_t* t) {
  worker_context& ctx = worker_context::of(t->loop);
  // In order: the first that finds no place means none has one (all try the same backends).
  while (ctx.waiting.head != nullptr) {
    if (!connect_queued(ctx.waiting.head)) break;
  }
  if (ctx.waiting.length == 0) uv_timer_stop(&ctx.waiting.timer);
}

}  // namespace

void open_waiting_room(worker_context& ctx) {
  uv_timer_init(&ctx.loop, &ctx.waiting.timer);
  ctx.waiting.timer_open = true;
}

void close_waiting_room(worker_context& ctx) {
  if (!ctx.waiting.timer_open) return;
  ctx.waiting.timer_open = false;
  uv_timer_stop(&ctx.waiting.timer);
  uv_close(reinterpret_cast<uv_handle_t*>(&ctx.waiting.timer), nullptr);
}

void enqueue_for_place(session* s) {
  worker_context& ctx = s->ctx();
  front_state* hs = s->hs;
  hs->queued = true;
  hs->queue_prev = ctx.waiting.tail;
  hs->queue_next = nullptr;
  if (ctx.waiting.tail != nullptr) ctx.waiting.tail->hs->queue_next = s;
  else ctx.waiting.head = s;
  ctx.waiting.tail = s;
  ++ctx.waiting.length;
  set_queued_count(ctx);
  uv_timer_start(&hs->timer, on_front_timer, ctx.cfg.shaping.queue_timeout_ms, 0);
  if (ctx.waiting.timer_open && !uv_is_active(reinterpret_cast<uv_handle_t*>(&ctx.waiting.timer))) {
    uv_timer_start(&ctx.waiting.timer, serve_queue, retry_tick_ms, retry_tick_ms);
  }
}

void leave_queue(session* s) {
  front_state* hs = s->hs;
  if (hs == nullptr || !hs->queued) return;
  worker_context& ctx = s->ctx();
  if (hs->queue_prev != nullptr) hs->queue_prev->hs->queue_next = hs->queue_next;
  else ctx.waiting.head = hs->queue_next;
  if (hs->queue_next != nullptr) hs->queue_next->hs->queue_prev = hs->queue_prev;
  else ctx.waiting.tail = hs->queue_prev;
  hs->queue_prev = hs->queue_next = nullptr;
  hs->queued = false;
  --ctx.waiting.length;
  set_queued_count(ctx);
}

void place_freed(worker_context& ctx) {
  if (ctx.waiting.length == 0 || !ctx.waiting.timer_open) return;
  uv_timer_start(&ctx.waiting.timer, serve_queue, 0, retry_tick_ms);
}

void on_queue_timeout(session* s) {
  worker_context& ctx = s->ctx();
  leave_queue(s);
  if (ctx.cfg.mode == proxy_mode::http) {
    answer_busy(s, ctx.cfg.shaping.queue_timeout_ms);
    return;
  }
  counter_add(ctx.row.errors[static_cast<std::size_t>(shm::error_kind::queue_timeout_tcp_close)], 1);
  close_session(s);
}

}  // namespace wslb::worker
