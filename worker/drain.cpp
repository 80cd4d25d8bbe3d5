#include "worker/drain.h"

#include <algorithm>

#include "common/log.h"
#include "worker/acceptor.h"
#include "worker/connection_flow.h"
#include "worker/connection_stats.h"
#include "worker/handover_receive.h"
#include "worker/handover_send.h"
#include "worker/session.h"

namespace wslb::worker {

namespace {

constexpr std::uint64_t close_tick_ms = 10;
constexpr std::uint64_t max_close_window_ms = 2000;
constexpr std::uint64_t min_close_window_ms = 50;
// After the window, a graceful close waits up to ~1.5 s (frame boundary, then the peers' FIN);
// anything still open after this much more is cut. Stays well inside the master's kill grace.
constexpr std::uint64_t hard_stop_after_window_ms = 2500;

void close_handle(uv_handle_t* h) {
  if (!uv_is_closing(h)) uv_close(h, nullptr);
}

void close_all_sessions(worker_context& ctx) {
  for (session* s = ctx.sessions; s != nullptr;) {
    session* next = s->next;  // close_session unlinks s
    close_session(s);
    s = next;
  }
}

void on_close_tick(uv_timer_t* t) {
  worker_context& ctx = worker_context::of(t->loop);
  const std::uint64_t now = uv_now(&ctx.loop);
  if (now >= ctx.hard_stop_ms) {
    close_all_sessions(ctx);
    return;
  }
  const std::uint64_t elapsed = now - ctx.close_started_ms;
  // Closes begun so far follow a straight line over the window, so clients that reconnect do
  // so at an even rate rather than all at once.
  const std::size_t target =
      elapsed >= ctx.close_window_ms
          ? ctx.close_total
          : static_cast<std::size_t>((ctx.close_total * elapsed + ctx.close_window_ms - 1) /
                                     ctx.close_window_ms);
  while (ctx.close_done < target && ctx.close_cursor != nullptr) {
    session* s = ctx.close_cursor;
    ctx.close_cursor = s->next;
    ++ctx.close_done;
    note_cause(s, shm::close_cause::drain);
    close_session_gracefully(s);
  }
  // Graceful closes that waited too long (boundary, FIN) are cut here rather than only on the
  // 250 ms housekeeping tick, so the worker leaves promptly.
  sweep_due_closes(ctx);
}

void on_drain_deadline(uv_timer_t* t) {
  worker_context& ctx = worker_context::of(t->loop);
  if (ctx.phase != worker_phase::draining) return;
  ctx.phase = worker_phase::closing;
  ctx.close_window_ms = std::clamp<std::uint64_t>(ctx.cfg.drain_timeout_ms / 4,
                                                  min_close_window_ms, max_close_window_ms);
  ctx.close_started_ms = uv_now(&ctx.loop);
  ctx.hard_stop_ms = ctx.close_started_ms + ctx.close_window_ms + hard_stop_after_window_ms;
  ctx.close_total = ctx.live_sessions;
  ctx.close_done = 0;
  ctx.close_cursor = ctx.sessions;
  log_line(ctx.who, "drain deadline reached: closing %zu connections over %llu ms",
           ctx.close_total, static_cast<unsigned long long>(ctx.close_window_ms));
  uv_timer_start(&ctx.drain_timer, on_close_tick, 0, close_tick_ms);
}

}  // namespace

void begin_drain(worker_context& ctx) {
  if (ctx.phase != worker_phase::running) return;
  ctx.phase = worker_phase::draining;
  stop_accepting(ctx);
  ctx.row.drain_deadline_ms.store(unix_ms() + ctx.cfg.drain_timeout_ms, std::memory_order_relaxed);
  log_line(ctx.who, "draining: %zu connections, deadline in %u ms", ctx.live_sessions,
           ctx.cfg.drain_timeout_ms);
  close_idle_keepalive(ctx);
  if (ctx.live_sessions == 0) {
    finish_loop(ctx);
    return;
  }
  uv_timer_start(&ctx.drain_timer, on_drain_deadline, ctx.cfg.drain_timeout_ms, 0);
}

void stop_now(worker_context& ctx, const char* why, int code) {
  if (ctx.phase == worker_phase::stopping) return;
  const bool was_running = ctx.phase == worker_phase::running;
  ctx.phase = worker_phase::stopping;
  ctx.exit_code = code;
  log_line(ctx.who, "stopping (%s): closing %zu connections", why, ctx.live_sessions);
  if (was_running) stop_accepting(ctx);
  close_all_sessions(ctx);
  finish_loop(ctx);
}

void check_drained(worker_context& ctx) {
  if ((ctx.phase == worker_phase::draining || ctx.phase == worker_phase::closing) &&
      ctx.live_sessions == 0) {
    log_line(ctx.who, "drained: exiting");
    finish_loop(ctx);
  }
}

void finish_loop(worker_context& ctx) {
  flush_byte_counters(ctx);
  close_handover_links(ctx);
  close_handover_socket(ctx);
  if (ctx.accept_open) stop_accepting(ctx);
  uv_timer_stop(&ctx.accept_timer);
  close_handle(reinterpret_cast<uv_handle_t*>(&ctx.accept_timer));
  close_handle(reinterpret_cast<uv_handle_t*>(&ctx.master_poll));
  close_handle(reinterpret_cast<uv_handle_t*>(&ctx.signal_poll));
  close_handle(reinterpret_cast<uv_handle_t*>(&ctx.housekeeping));
  close_handle(reinterpret_cast<uv_handle_t*>(&ctx.drain_timer));
  close_waiting_room(ctx);
  stop_shedding(ctx);
  ctx.access.stop_timer();
}

}  // namespace wslb::worker
