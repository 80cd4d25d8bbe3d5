#include "worker/worker_main.h"

#include <errno.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <new>

#include "common/exit_codes.h"
#include "common/log.h"
#include "tls/server_context.h"
#include "worker/acceptor.h"
#include "worker/backend_set.h"
#include "worker/connection_stats.h"
#include "worker/drain.h"
#include "worker/handover_receive.h"
#include "worker/master_link.h"
#include "worker/session.h"
#include "worker/tls_transport.h"
#include "worker/worker_context.h"

namespace wslb::worker {

namespace {

// Descriptors kept back from the session budget: the listener, the master link, the signalfd,
// libuv's epoll and eventfd, stdio, and some slack.
constexpr std::size_t reserved_fds = 32;
constexpr std::uint64_t housekeeping_ms = 250;

// Raises the soft descriptor limit to the hard one (the master does too; children inherit it,
// but a worker started by other means should not depend on that) and returns the limit.
std::size_t descriptor_limit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return 1024;
  if (lim.rlim_cur < lim.rlim_max) {
    rlimit raised = lim;
    raised.rlim_cur = lim.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) lim = raised;
  }
  return lim.rlim_cur == RLIM_INFINITY ? 1u << 20 : static_cast<std::size_t>(lim.rlim_cur);
}

// With --on-down close, connections to a backend that just went down are closed cleanly.
// Noticed here, on a timer, rather than on the hot path.
void close_sessions_of_down_backends(worker_context& ctx) {
  const std::size_t n = ctx.cfg.backends.size();
  std::uint64_t went_down = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint8_t healthy =
        ctx.table.backends[ctx.cfg.backends[i].row].healthy.load(std::memory_order_relaxed) == 1;
    if (ctx.seen_healthy[i] && !healthy) went_down |= std::uint64_t{1} << i;
    ctx.seen_healthy[i] = healthy;
  }
  if (went_down == 0 || ctx.cfg.on_down != on_down_policy::close) return;
  std::size_t closed = 0;
  for (session* s = ctx.sessions; s != nullptr;) {
    session* next = s->next;
    if (s->relaying() && !s->graceful && s->backend_index != no_backend_index &&
        ((went_down >> s->backend_index) & 1u)) {
      note_cause(s, shm::close_cause::backend);  // --on-down close: the backend went away
      close_session_gracefully(s);
      ++closed;
    }
    s = next;
  }
  if (closed > 0) log_line(ctx.who, "on-down close: closing %zu connections", closed);
}

void on_housekeeping(uv_timer_t* t) {
  worker_context& ctx = worker_context::of(t->loop);
  flush_byte_counters(ctx);
  follow_backend_set(ctx);  // a removed backend retires here even if nothing is picked
  close_sessions_of_down_backends(ctx);
  sweep_sessions(ctx);
  park_idle_tls(ctx);
}

// What this worker cannot serve at all; empty when the configuration is fine.
const char* unservable(const config& cfg) {
  if (cfg.backends.empty()) return "no backend configured";
  if (cfg.backends.size() > shm::max_backends) return "more backends than the table holds";
  for (const backend_config& b : cfg.backends) {
    if (b.row >= shm::max_backends) return "a backend has no table row";
  }
  if (cfg.tls.enabled() && !cfg.tls.server) return "TLS certificates not loaded";
  return nullptr;
}

}  // namespace

std::size_t max_connections_for(std::size_t fd_limit) {
  return fd_limit > reserved_fds + 2 ? (fd_limit - reserved_fds) / 2 : 1;
}

int run_worker(const launch& how) {
  char who[24];
  std::snprintf(who, sizeof who, "worker %zu", how.slot);
  if (const char* why = unservable(how.cfg)) {
    log_line(who, "cannot start: %s", why);
    return exit_code::fatal_config;
  }
  const int signal_fd = take_over_signals();
  if (signal_fd < 0) {
    log_line(who, "cannot start: signalfd: %s", std::strerror(errno));
    return exit_code::fatal_config;
  }
  auto ctx = std::unique_ptr<worker_context>(
      new (std::nothrow) worker_context(how.cfg, how.table, how.slot, how.generation));
  if (!ctx) {
    log_line(who, "cannot start: out of memory");
    return exit_code::fatal_config;
  }
  // Tickets sealed here open in every other worker: the keys are the table's (the master's).
  if (how.cfg.tls.server) how.cfg.tls.server->use_ticket_keys(&how.table.tls);
  ctx->listen_fd = how.listen_fd;
  ctx->master_fd = how.master_fd;
  ctx->signal_fd = signal_fd;
  ctx->runtime_dir = how.runtime_dir;
  // Two descriptors per session (client and backend).
  const std::size_t fds = descriptor_limit();
  ctx->max_sessions = max_connections_for(fds);

  int r = uv_loop_init(&ctx->loop);
  if (r != 0) {
    log_line(who, "cannot start: event loop: %s", uv_strerror(r));
    return exit_code::fatal_config;
  }
  ctx->loop.data = ctx.get();
  if (!ctx->cfg.access_log.empty()) {
    std::string error;
    if (!ctx->access.open(&ctx->loop, ctx->cfg.access_log, ctx->who, error)) {
      log_line(who, "cannot start: %s", error.c_str());
      return exit_code::fatal_config;
    }
  }
  uv_timer_init(&ctx->loop, &ctx->accept_timer);
  uv_timer_init(&ctx->loop, &ctx->housekeeping);
  uv_timer_init(&ctx->loop, &ctx->drain_timer);
  open_waiting_room(*ctx);
  start_shedding(*ctx);
  r = watch_master_and_signals(*ctx);
  if (r == 0) r = start_accepting(*ctx);
  if (r != 0) {
    // Without the listener or the master link this worker cannot do its job; the master's
    // policy for this exit code is not to respawn it in a loop.
    log_line(who, "cannot start: %s", uv_strerror(r));
    return exit_code::fatal_config;
  }
  const std::uint64_t tick =
      ctx->cfg.idle_timeout_ms == 0
          ? housekeeping_ms
          : std::clamp<std::uint64_t>(ctx->cfg.idle_timeout_ms / 4, 10, housekeeping_ms);
  uv_timer_start(&ctx->housekeeping, on_housekeeping, tick, tick);
  open_handover_socket(*ctx);  // before ready: an old worker may hand over right after
  log_line(who, "accepting (generation %u, %s mode, %s, up to %zu connections)",
           how.generation, to_string(how.cfg.mode), to_string(how.cfg.balance.mode),
           ctx->max_sessions);
  if (!send_ready(*ctx)) {
    log_line(who, "cannot reach the master: %s", std::strerror(errno));
    stop_now(*ctx, "master unreachable", exit_code::ok);
  }

  uv_run(&ctx->loop, UV_RUN_DEFAULT);
  flush_byte_counters(*ctx);
  ctx->access.finish();
  const int code = ctx->exit_code;
  if (uv_loop_close(&ctx->loop) != 0) {
    // Something is still open (it cannot be, but the process is ending anyway): do not free
    // memory libuv may still point at.
    (void)ctx.release();
  }
  close(signal_fd);
  return code;
}

}  // namespace wslb::worker
