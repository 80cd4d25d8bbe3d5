#include "common/helper_loop.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/child_channel.h"
#include "common/exit_codes.h"
#include "common/log.h"

namespace wslb {

bool helper_loop::open() {
  // The master's death must end us even if its end of the channel were somehow kept open.
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  // SIGTERM arrives through a signalfd rather than uv_signal_t: libuv's signal bookkeeping is
  // process-wide and was copied from the master by fork(), so a uv_signal_t here could also
  // wake handles that belong to the master's loop.
  sigset_t term;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  sigprocmask(SIG_BLOCK, &term, nullptr);
  // Interactive signals are the master's to act on (it then stops us); a socket closed under
  // a write must not kill the process.
  for (int sig : {SIGINT, SIGHUP, SIGUSR1, SIGUSR2, SIGPIPE}) signal(sig, SIG_IGN);

  signal_fd_ = signalfd(-1, &term, SFD_NONBLOCK | SFD_CLOEXEC);
  if (signal_fd_ < 0) {
    log_line(who_, "cannot create a signalfd: %s", strerror(errno));
    return false;
  }
  if (const int rc = uv_loop_init(&loop_); rc != 0) {
    log_line(who_, "cannot create an event loop: %s", uv_strerror(rc));
    close(signal_fd_);
    return false;
  }
  uv_poll_init(&loop_, &signal_watch_, signal_fd_);
  signal_watch_.data = this;
  uv_poll_start(&signal_watch_, UV_READABLE, on_signal_readable);
  if (master_fd_ >= 0 && uv_poll_init(&loop_, &master_watch_, master_fd_) == 0) {
    watching_master_ = true;
    master_watch_.data = this;
    uv_poll_start(&master_watch_, UV_READABLE, on_master_readable);
  }
  return true;
}

int helper_loop::run(std::function<void()> close_handles) {
  close_handles_ = std::move(close_handles);
  uv_run(&loop_, UV_RUN_DEFAULT);
  // stop() closed every handle; whatever is still closing finishes here.
  uv_run(&loop_, UV_RUN_DEFAULT);
  const int rc = uv_loop_close(&loop_);
  close(signal_fd_);
  if (rc != 0) log_line(who_, "event loop did not close cleanly: %s", uv_strerror(rc));
  return exit_code::ok;
}

void helper_loop::stop(const char* why) {
  if (stopping_) return;
  stopping_ = true;
  log_line(who_, "exiting: %s", why);
  if (close_handles_) close_handles_();
  if (watching_master_) uv_close(reinterpret_cast<uv_handle_t*>(&master_watch_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&signal_watch_), nullptr);
}

void helper_loop::on_master_readable(uv_poll_t* h, int status, int) {
  auto* self = static_cast<helper_loop*>(h->data);
  if (status < 0) return self->stop("channel to the master failed");
  char buf[16];
  const ssize_t n = recv(self->master_fd_, buf, sizeof buf, MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
  if (n <= 0) return self->stop("the master is gone");
  for (ssize_t i = 0; i < n; ++i) {
    if (buf[i] == child_channel::msg_stop || buf[i] == child_channel::msg_drain) {
      return self->stop("asked by the master");
    }
  }
}

void helper_loop::on_signal_readable(uv_poll_t* h, int, int) {
  auto* self = static_cast<helper_loop*>(h->data);
  signalfd_siginfo info{};
  while (read(self->signal_fd_, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
    if (info.ssi_signo == SIGTERM) return self->stop("SIGTERM");
  }
}

}  // namespace wslb
