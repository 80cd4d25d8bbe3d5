#include "checker/checker_main.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <cstring>

#include "checker/scheduler.h"
#include "common/child_channel.h"
#include "common/exit_codes.h"
#include "common/log.h"

namespace wslb::checker {

namespace {
constexpr const char* who = "checker";

// Everything the checker process owns, hung off the loop (no globals).
struct checker_process {
  uv_loop_t loop{};
  scheduler* sched = nullptr;
  uv_poll_t master_watch{};
  uv_poll_t signal_watch{};
  int master_fd = -1;
  int signal_fd = -1;
  bool watching_master = false;
  bool stopping = false;

  void stop(const char* why) {
    if (stopping) return;
    stopping = true;
    log_line(who, "exiting: %s", why);
    sched->stop();
    if (watching_master) uv_close(reinterpret_cast<uv_handle_t*>(&master_watch), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&signal_watch), nullptr);
  }
};

void on_master_readable(uv_poll_t* h, int status, int) {
  auto* p = static_cast<checker_process*>(h->data);
  if (status < 0) return p->stop("channel to the master failed");
  char buf[16];
  const ssize_t n = recv(p->master_fd, buf, sizeof buf, MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
  if (n <= 0) return p->stop("the master is gone");
  for (ssize_t i = 0; i < n; ++i) {
    if (buf[i] == child_channel::msg_stop || buf[i] == child_channel::msg_drain) {
      return p->stop("asked by the master");
    }
  }
}

void on_signal_readable(uv_poll_t* h, int, int) {
  auto* p = static_cast<checker_process*>(h->data);
  signalfd_siginfo info{};
  while (read(p->signal_fd, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
    if (info.ssi_signo == SIGTERM) return p->stop("SIGTERM");
  }
}
}  // namespace

int run_checker(const config& cfg, shm::table& table, int master_fd) {
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
  // a probe's write must not kill the process.
  for (int sig : {SIGINT, SIGHUP, SIGUSR1, SIGUSR2, SIGPIPE}) signal(sig, SIG_IGN);

  checker_process p;
  p.master_fd = master_fd;
  p.signal_fd = signalfd(-1, &term, SFD_NONBLOCK | SFD_CLOEXEC);
  if (p.signal_fd < 0) {
    log_line(who, "cannot create a signalfd: %s", strerror(errno));
    return exit_code::failure;
  }
  if (const int rc = uv_loop_init(&p.loop); rc != 0) {
    log_line(who, "cannot create an event loop: %s", uv_strerror(rc));
    close(p.signal_fd);
    return exit_code::failure;
  }
  p.loop.data = &p;
  scheduler sched(&p.loop, table, cfg.check);
  p.sched = &sched;

  uv_poll_init(&p.loop, &p.signal_watch, p.signal_fd);
  p.signal_watch.data = &p;
  uv_poll_start(&p.signal_watch, UV_READABLE, on_signal_readable);
  if (master_fd >= 0 && uv_poll_init(&p.loop, &p.master_watch, master_fd) == 0) {
    p.watching_master = true;
    p.master_watch.data = &p;
    uv_poll_start(&p.master_watch, UV_READABLE, on_master_readable);
  }

  sched.start();
  uv_run(&p.loop, UV_RUN_DEFAULT);
  // stop() closed every handle; whatever is still closing finishes here.
  uv_run(&p.loop, UV_RUN_DEFAULT);
  const int rc = uv_loop_close(&p.loop);
  close(p.signal_fd);
  if (rc != 0) log_line(who, "event loop did not close cleanly: %s", uv_strerror(rc));
  return exit_code::ok;
}

}  // namespace wslb::checker
