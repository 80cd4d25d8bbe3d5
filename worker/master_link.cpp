#include "worker/master_link.h"

#include <errno.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/exit_codes.h"
#include "common/log.h"
#include "worker/drain.h"
#include "worker/handover_send.h"
#include "worker/worker_main.h"

namespace wslb::worker {

namespace {

void on_master_readable(uv_poll_t* poll, int status, int events) {
  worker_context& ctx = worker_context::of(poll->loop);
  if (status < 0) {
    stop_now(ctx, "master channel failed", exit_code::ok);
    return;
  }
  for (;;) {
    char buf[16];
    const ssize_t n = recv(ctx.master_fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0) {
      stop_now(ctx, "master is gone", exit_code::ok);
      return;
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      stop_now(ctx, "master channel failed", exit_code::ok);
      return;
    }
    for (ssize_t i = 0; i < n; ++i) {
      if (buf[i] == msg_drain) begin_drain(ctx);
      if (buf[i] == msg_handover) begin_handover(ctx);
      if (buf[i] == child_channel::msg_reopen_logs) ctx.access.reopen();
      if (buf[i] == msg_stop) {
        stop_now(ctx, "asked to stop", exit_code::ok);
        return;
      }
    }
  }
  if (events & UV_DISCONNECT) stop_now(ctx, "master is gone", exit_code::ok);
}

void on_signal_readable(uv_poll_t* poll, int status, int) {
  worker_context& ctx = worker_context::of(poll->loop);
  if (status < 0) return;
  signalfd_siginfo info{};
  while (read(ctx.signal_fd, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
    switch (info.ssi_signo) {
      case SIGQUIT:
        begin_drain(ctx);
        break;
      case SIGUSR1:  // the master forwards it over the channel; a direct one works as well
        ctx.access.reopen();
        break;
      case SIGTERM:
      case SIGINT:
        stop_now(ctx, info.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT", exit_code::ok);
        return;
      default:
        break;
    }
  }
}

}  // namespace

int take_over_signals() {
  signal(SIGPIPE, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  signal(SIGUSR2, SIG_IGN);
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGQUIT);
  sigaddset(&mask, SIGUSR1);
  if (sigprocmask(SIG_BLOCK, &mask, nullptr) != 0) return -1;
  return signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
}

int watch_master_and_signals(worker_context& ctx) {
  int r = uv_poll_init(&ctx.loop, &ctx.master_poll, ctx.master_fd);
  if (r == 0) r = uv_poll_start(&ctx.master_poll, UV_READABLE | UV_DISCONNECT, on_master_readable);
  if (r != 0) return r;
  r = uv_poll_init(&ctx.loop, &ctx.signal_poll, ctx.signal_fd);
  if (r == 0) r = uv_poll_start(&ctx.signal_poll, UV_READABLE, on_signal_readable);
  return r;
}

bool send_ready(worker_context& ctx) {
  return send(ctx.master_fd, &msg_ready, 1, MSG_NOSIGNAL | MSG_DONTWAIT) == 1;
}

}  // namespace wslb::worker
