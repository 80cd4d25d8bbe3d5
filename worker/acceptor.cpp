#include "worker/acceptor.h"

#include <errno.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "common/log.h"
#include "worker/accept_balance.h"
#include "worker/drain.h"
#include "worker/connection_flow.h"
#include "worker/session.h"

namespace wslb::worker {

namespace {

// Connections taken per wake-up: enough to keep up with a storm, few enough that this loop's
// relaying is not held up behind a long run of accepts.
constexpr int accept_batch = 8;
// How long a worker that is ahead stays out of the wait queue.
constexpr std::uint64_t defer_ms = 1;
// How often a worker out of descriptors looks again (it also looks whenever one is released).
constexpr std::uint64_t fd_retry_ms = 100;
// One "out of file descriptors" line per this interval at most.
constexpr std::int64_t fd_log_interval_ms = 10'000;

void on_accept_ready(uv_poll_t* poll, int status, int events);

// Joins the listener's wait queue, at its tail. The registration goes straight into the loop's
// epoll set with EPOLLEXCLUSIVE, so that a new connection wakes one waiting worker instead of
// all of them. libuv cannot register it itself (uv_poll has no such flag), so the event carries
// the descriptor of accept_poll's eventfd, which is never written: libuv finds accept_poll by
// that descriptor and runs on_accept_ready.
bool join_queue(worker_context& ctx) {
  epoll_event ev{};
  ev.data.fd = ctx.accept_wake_fd;
  ev.events = ctx.accept_exclusive ? EPOLLIN | EPOLLEXCLUSIVE : EPOLLIN;
  const int epfd = uv_backend_fd(&ctx.loop);
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, ctx.listen_fd, &ev) == 0) return true;
  if (errno == EINVAL && ctx.accept_exclusive) {  // a kernel without EPOLLEXCLUSIVE (< 4.5)
    log_line(ctx.who, "EPOLLEXCLUSIVE not supported: every worker wakes on each connection");
    ctx.accept_exclusive = false;
    ev.events = EPOLLIN;
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, ctx.listen_fd, &ev) == 0) return true;
  }
  log_line(ctx.who, "cannot watch the listener: %s", std::strerror(errno));
  return false;
}

// Leaves the wait queue. Must happen before accept_poll stops: an event for a descriptor libuv
// no longer watches would make it remove that descriptor, not ours, and ours would fire again.
void leave_queue(worker_context& ctx) {
  epoll_ctl(uv_backend_fd(&ctx.loop), EPOLL_CTL_DEL, ctx.listen_fd, nullptr);
}

void arm(worker_context& ctx) {
  if (ctx.accept_polling || !ctx.accept_open) return;
  ctx.accept_polling = join_queue(ctx);
}

void disarm(worker_context& ctx) {
  if (!ctx.accept_polling) return;
  leave_queue(ctx);
  ctx.accept_polling = false;
}

void on_accept_timer(uv_timer_t* t) {
  worker_context& ctx = worker_context::of(t->loop);
  if (ctx.phase != worker_phase::running) return;
  if (ctx.fd_paused) {
    if (ctx.live_sessions >= ctx.max_sessions) {
      uv_timer_start(&ctx.accept_timer, on_accept_timer, fd_retry_ms, 0);
      return;
    }
    ctx.fd_paused = false;
  }
  arm(ctx);
}

// Out of descriptors (or at the session limit): stop polling, since a level-triggered poll on a
// queue we cannot take from would spin, and look again after a while or when one is released.
void pause_for_descriptors(worker_context& ctx) {
  disarm(ctx);
  if (!ctx.fd_paused) {
    const std::int64_t now = monotonic_ms();
    if (ctx.fd_pause_logged_ms < 0 || now - ctx.fd_pause_logged_ms >= fd_log_interval_ms) {
      log_line(ctx.who, "out of file descriptors: %zu connections, pausing accept",
               ctx.live_sessions);
      ctx.fd_pause_logged_ms = now;
    }
  }
  ctx.fd_paused = true;
  uv_timer_start(&ctx.accept_timer, on_accept_timer, fd_retry_ms, 0);
}

// At --tls-max-handshakes in progress: out of the wait queue until one ends, so that a
// reconnect storm waits in the kernel's accept queue (or goes to a peer) instead of taking
// this loop's time from the connections it already relays.
void pause_for_handshakes(worker_context& ctx) {
  disarm(ctx);
  ctx.handshake_paused = true;
}

bool at_handshake_cap(const worker_context& ctx) {
  return ctx.cfg.tls.server && ctx.tls_handshakes_in_progress >= ctx.cfg.tls.max_handshakes;
}

// Clearly ahead of the least-loaded peer: out of the wait queue for a moment, so that new
// connections wake the peers until they catch up.
void sit_out(worker_context& ctx) {
  disarm(ctx);
  ctx.sat_out_last_wake = true;
  ctx.peers_accepted_at_sit_out = peers_accepted(ctx.table, ctx.slot, ctx.generation);
  uv_timer_start(&ctx.accept_timer, on_accept_timer, defer_ms, 0);
}

// False right after sitting out if the peers took nothing meanwhile: they are not keeping up
// (hung, or stopped by a signal, with their low counts for ever), so leaving the queue to them
// again would throttle this worker to a trickle.
bool may_sit_out(worker_context& ctx) {
  if (!ctx.sat_out_last_wake) return true;
  ctx.sat_out_last_wake = false;
  return peers_accepted(ctx.table, ctx.slot, ctx.generation) != ctx.peers_accepted_at_sit_out;
}

struct accept_outcome {
  accept_standing standing;
  bool drained;  // the queue was found empty
};

// Takes up to accept_batch connections, stopping early at an empty queue, a descriptor
// shortage, or (when `stop_when_ahead`) as soon as this worker is ahead of its peers. The
// peers' rows are read once per wake-up: within a batch only this worker's count moves.
accept_outcome accept_some(worker_context& ctx, bool stop_when_ahead) {
  const std::optional<std::uint64_t> least =
      least_peer_connections(ctx.table, ctx.slot, ctx.generation);
  const auto standing_now = [&] {
    return least ? standing_against(ctx.row.connections.load(std::memory_order_relaxed), *least)
                 : accept_standing::alone;
  };
  accept_outcome out{standing_now(), false};
  for (int i = 0; i < accept_batch && ctx.phase == worker_phase::running; ++i) {
    if (ctx.live_sessions >= ctx.max_sessions) {
      pause_for_descriptors(ctx);
      return out;
    }
    if (at_handshake_cap(ctx)) {
      pause_for_handshakes(ctx);
      return out;
    }
    sockaddr_storage peer{};
    socklen_t len = sizeof peer;
    const int fd = accept4(ctx.listen_fd, reinterpret_cast<sockaddr*>(&peer), &len,
                           SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      switch (errno) {
        case EAGAIN:  // nothing left, or another worker was faster
          out.drained = true;
          return out;
        case EINTR:
        case ECONNABORTED:  // the client gave up while queued
        case EPROTO:
          continue;
        case EMFILE:
        case ENFILE:
        case ENOBUFS:
        case ENOMEM:
          pause_for_descriptors(ctx);
          return out;
        default:
          log_line(ctx.who, "accept failed: %s", std::strerror(errno));
          return out;
      }
    }
    start_session(ctx, fd, peer);
    out.standing = standing_now();
    if (stop_when_ahead && out.standing >= accept_standing::ahead) return out;
  }
  return out;
}

void on_accept_ready(uv_poll_t* poll, int status, int) {
  worker_context& ctx = worker_context::of(poll->loop);
  if (status < 0 || ctx.phase != worker_phase::running || !ctx.accept_polling) return;
  // The kernel woke only this worker for what is queued, so take it; a worker ahead of its
  // least-loaded peer takes one connection per loop turn instead of a batch. Then step to the
  // back of the queue, so that the next connection wakes the next idle worker (round robin).
  // Sitting out (leaving the queue for a moment, so that new connections wake the peers) only
  // with the queue empty, or when far ahead: the peers were not woken for what is queued, so
  // it waits for them to be woken by a newer connection, or for this worker to come back.
  const bool polite = may_sit_out(ctx);
  const accept_outcome out = accept_some(ctx, polite);
  if (!ctx.accept_polling || out.standing == accept_standing::alone) return;
  const bool sit = out.standing == accept_standing::far_ahead ||
                   (out.standing == accept_standing::ahead && out.drained);
  if (sit && polite) {
    sit_out(ctx);
    return;
  }
  disarm(ctx);
  arm(ctx);
}

void close_wake_fd(uv_handle_t* handle) {
  worker_context& ctx = worker_context::of(handle->loop);
  close(ctx.accept_wake_fd);
  ctx.accept_wake_fd = -1;
}

}  // namespace

int start_accepting(worker_context& ctx) {
  ctx.accept_wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (ctx.accept_wake_fd < 0) return uv_translate_sys_error(errno);
  int r = uv_poll_init(&ctx.loop, &ctx.accept_poll, ctx.accept_wake_fd);
  if (r == 0) r = uv_poll_start(&ctx.accept_poll, UV_READABLE, on_accept_ready);
  if (r != 0) {
    close(ctx.accept_wake_fd);
    ctx.accept_wake_fd = -1;
    return r;
  }
  ctx.accept_open = true;
  arm(ctx);
  return ctx.accept_polling ? 0 : UV_EINVAL;
}

void stop_accepting(worker_context& ctx) {
  uv_timer_stop(&ctx.accept_timer);
  ctx.fd_paused = false;
  ctx.handshake_paused = false;
  if (ctx.accept_open) {
    disarm(ctx);
    uv_close(reinterpret_cast<uv_handle_t*>(&ctx.accept_poll), close_wake_fd);
    ctx.accept_open = false;
  }
  if (ctx.listen_fd >= 0) {
    close(ctx.listen_fd);
    ctx.listen_fd = -1;
  }
}

void on_handshake_finished(worker_context& ctx) {
  if (!ctx.handshake_paused || at_handshake_cap(ctx)) return;
  ctx.handshake_paused = false;
  if (ctx.phase == worker_phase::running && !ctx.fd_paused) arm(ctx);
}

void on_session_released(worker_context& ctx) {
  if (ctx.fd_paused && ctx.phase == worker_phase::running &&
      ctx.live_sessions < ctx.max_sessions) {
    ctx.fd_paused = false;
    uv_timer_stop(&ctx.accept_timer);
    arm(ctx);
  }
  check_drained(ctx);
}

}  // namespace wslb::worker
