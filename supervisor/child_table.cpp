#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "checker/checker_main.h"
#include "common/log.h"
#include "shm/table_ops.h"
#include "supervisor/child_process.h"
#include "supervisor/master_state.h"
#include "common/child_channel.h"
#include "worker/worker_main.h"

namespace wslb::supervisor {

namespace {

// Lets the integration tests make new workers fail at start, the way a worker with a
// configuration it cannot serve, or one crashing on start-up, would: WSLB_FAULT_FOR_TEST names
// a file holding "worker-fatal-config" or "worker-crash"; removing the file ends the fault.
// Returns the exit code to use, or -1 for none.
int injected_start_failure_for_test() {
  const char* path = std::getenv("WSLB_FAULT_FOR_TEST");
  if (!path) return -1;
  std::ifstream file(path);
  std::string fault;
  if (!(file >> fault)) return -1;
  if (fault == "worker-fatal-config") {
    log_line("worker", "cannot start: fatal configuration (injected by WSLB_FAULT_FOR_TEST)");
    return exit_code::fatal_config;
  }
  if (fault == "worker-crash") abort();
  return -1;
}

}  // namespace

std::string describe_exit(int status) {
  if (WIFSIGNALED(status)) return std::string("killed by signal ") + strsignal(WTERMSIG(status));
  return "exit code " + std::to_string(WEXITSTATUS(status));
}

std::optional<std::size_t> master::free_slot() const {
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    if (slots_[i].pid == 0 && !uv_is_active(reinterpret_cast<const uv_handle_t*>(&slots_[i].backoff_timer)) &&
        table_->get().workers[i].state.load() != shm::worker_state::failed) {
      return i;
    }
  }
  return std::nullopt;
}

pid_t master::spawn_child(child& c, std::size_t slot, const std::string& what, int extra_fd,
                          const std::function<int(int)>& body) {
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, pair) != 0) {
    log_line(who, "cannot create a channel for %s: %s", what.c_str(), strerror(errno));
    return -1;
  }
  const int child_end = pair[1];
  const pid_t pid = fork_child({extra_fd, child_end}, [&] { return body(child_end); });
  close(pair[1]);
  if (pid < 0) {
    log_line(who, "cannot fork %s: %s", what.c_str(), strerror(errno));
    close(pair[0]);
    return -1;
  }
  c.pid = pid;
  c.channel = pair[0];
  c.started_ms = monotonic_ms();
  c.ready = false;
  c.asked_to_exit = false;
  watch_channel(c, slot);
  return pid;
}

void master::spawn_worker(std::size_t slot, std::uint32_t generation) {
  shm::table& t = table_->get();
  child& c = slots_[slot];
  // The row is clean: zeroed at creation, cleared when its previous worker was reaped.
  shm::worker_row& row = t.workers[slot];
  row.generation.store(generation, relaxed);
  row.state.store(shm::worker_state::starting, relaxed);
  row.started_ms.store(unix_ms(), relaxed);
  row.backoff_until_ms.store(0, relaxed);
  if (slot + 1 > t.header.slot_high_water.load()) t.header.slot_high_water = static_cast<std::uint32_t>(slot + 1);

  c.cfg = cfg_;
  c.generation = generation;
  const config& cfg = *c.cfg;
  const int listen_fd = listen_fd_;
  const pid_t pid = spawn_child(c, slot, "worker " + std::to_string(slot), listen_fd,
                                [&cfg, &t, listen_fd, slot, generation](int master_fd) {
    if (const int code = injected_start_failure_for_test(); code >= 0) return code;
    return worker::run_worker(worker::launch{cfg, t, listen_fd, master_fd, slot, generation});
  });
  row.pid.store(pid > 0 ? pid : 0, relaxed);
  if (pid < 0) row.state.store(shm::worker_state::empty, relaxed);
}

void master::watch_channel(child& c, std::size_t slot) {
  c.watch = new channel_watch{{}, this, slot};
  uv_poll_init(&loop_, &c.watch->poll, c.channel);
  c.watch->poll.data = c.watch;
  uv_poll_start(&c.watch->poll, UV_READABLE, [](uv_poll_t* h, int, int) {
    auto* w = static_cast<channel_watch*>(h->data);
    w->owner->on_channel_readable(w->slot);
  });
}

void master::spawn_checker() {
  shm::table& t = table_->get();
  checker_.cfg = cfg_;
  const config& cfg = *checker_.cfg;
  const pid_t pid = spawn_child(checker_, shm::max_worker_slots, "the checker", -1,
                                [&cfg, &t](int master_fd) {
    return checker::run_checker(cfg, t, master_fd);
  });
  if (pid > 0) t.checker.pid.store(pid, relaxed);
}

void master::on_channel_readable(std::size_t slot) {
  child& c = slot == shm::max_worker_slots ? checker_ : slots_[slot];
  char buf[16];
  const ssize_t n = recv(c.channel, buf, sizeof buf, 0);
  if (n <= 0) {
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    close_channel(c);  // the child is gone; SIGCHLD does the rest
    return;
  }
  if (slot == shm::max_worker_slots) return;  // the checker sends nothing we act on
  for (ssize_t i = 0; i < n; ++i) {
    if (buf[i] == child_channel::msg_ready && !c.ready) {
      c.ready = true;
      shm::worker_row& row = table_->get().workers[slot];
      if (!c.asked_to_exit) row.state.store(shm::worker_state::running, relaxed);
      check_restart_progress();
    }
  }
}

void master::close_channel(child& c) {
  if (c.watch) {
    uv_close(reinterpret_cast<uv_handle_t*>(&c.watch->poll),
             [](uv_handle_t* h) { delete static_cast<channel_watch*>(h->data); });
    c.watch = nullptr;
  }
  if (c.channel >= 0) {
    close(c.channel);
    c.channel = -1;
  }
}

void master::send(child& c, char message) {
  if (c.channel >= 0) {
    // A full or broken channel means the child is gone or going; SIGCHLD follows.
    [[maybe_unused]] ssize_t n = ::send(c.channel, &message, 1, MSG_NOSIGNAL);
  }
}

void master::reap_children() {
  for (;;) {
    int status = 0;
    const pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid <= 0) break;
    if (pid == checker_.pid) {
      on_checker_exit(status);
      continue;
    }
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      if (slots_[i].pid == pid) {
        on_worker_exit(i, status);
        break;
      }
    }
  }
  if (stopping_) check_stop_progress();
}

void master::on_worker_exit(std::size_t slot, int status) {
  shm::table& t = table_->get();
  child& c = slots_[slot];
  shm::worker_row& row = t.workers[slot];
  const std::int64_t lived = monotonic_ms() - c.started_ms;
  const pid_t pid = c.pid;
  close_channel(c);
  c.pid = 0;
  shm::clear_worker_row(t, slot);  // its live counts die with it; totals are kept
  row.pid.store(0, relaxed);

  if (c.asked_to_exit || stopping_) {
    if (c.asked_to_exit && !stopping_) {
      log_line(who, "worker %zu (generation %u) finished draining (%s)", slot, c.generation,
               describe_exit(status).c_str());
    }
    row.state.store(shm::worker_state::empty, relaxed);
    c.policy = respawn_policy{};
    c.asked_to_exit = false;
    check_restart_progress();
    return;
  }
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  const respawn_decision d = c.policy.on_unexpected_exit(code, lived);
  row.restarts.fetch_add(1, relaxed);
  if (c.generation != generation_ && !(restart_ && restart_->generation == c.generation)) {
    log_line(who, "worker %zu of old generation %u exited (%s); not replaced", slot,
             c.generation, describe_exit(status).c_str());
    row.state.store(shm::worker_state::empty, relaxed);
    return;
  }
  switch (d.action) {
    case respawn_action::give_up:
      log_line(who,
               "worker %zu exited with code %d (fatal configuration) after %lld ms; not "
               "restarting it: fix the configuration and reload",
               slot, code, static_cast<long long>(lived));
      row.state.store(shm::worker_state::failed, relaxed);
      break;
    case respawn_action::respawn_now:
      log_line(who, "worker %zu (pid %d) exited unexpectedly (%s) after %lld ms; restarting now",
               slot, pid, describe_exit(status).c_str(), static_cast<long long>(lived));
      spawn_worker(slot, c.generation);
      break;
    case respawn_action::respawn_later: {
      log_line(who,
               "worker %zu exited (%s) %lld ms after start, %u failed starts in a row; next "
               "attempt in %u ms",
               slot, describe_exit(status).c_str(), static_cast<long long>(lived),
               c.policy.failed_starts(), d.delay_ms);
      row.state.store(shm::worker_state::backoff, relaxed);
      row.backoff_until_ms.store(unix_ms() + d.delay_ms, relaxed);
      c.backoff_timer.data = this;
      uv_timer_start(&c.backoff_timer, [](uv_timer_t* h) {
        auto* self = static_cast<master*>(h->data);
        for (std::size_t i = 0; i < self->slots_.size(); ++i) {
          if (&self->slots_[i].backoff_timer == h && !self->stopping_) {
            self->spawn_worker(i, self->slots_[i].generation);
          }
        }
      }, d.delay_ms, 0);
      break;
    }
  }
}

void master::on_checker_exit(int status) {
  close_channel(checker_);
  checker_.pid = 0;
  table_->get().checker.pid.store(0, relaxed);
  if (checker_.asked_to_exit || stopping_) return;
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  const respawn_decision d =
      checker_.policy.on_unexpected_exit(code, monotonic_ms() - checker_.started_ms);
  table_->get().checker.restarts.fetch_add(1, relaxed);
  if (d.action == respawn_action::give_up) {
    log_line(who, "health checker exited with fatal configuration (%s); not restarting it",
             describe_exit(status).c_str());
    return;
  }
  log_line(who, "health checker exited unexpectedly (%s); restarting it in %u ms",
           describe_exit(status).c_str(), d.delay_ms);
  checker_.backoff_timer.data = this;
  uv_timer_start(&checker_.backoff_timer, [](uv_timer_t* h) {
    auto* self = static_cast<master*>(h->data);
    if (!self->stopping_) self->spawn_checker();
  }, d.delay_ms, 0);
}

void master::drain_slot(std::size_t slot) {
  child& c = slots_[slot];
  shm::worker_row& row = table_->get().workers[slot];
  if (c.pid == 0) {
    // A slot waiting in backoff has no process: cancelling the timer is its whole drain.
    uv_timer_stop(&c.backoff_timer);
    if (row.state.load() == shm::worker_state::backoff) row.state.store(shm::worker_state::empty);
    return;
  }
  c.asked_to_exit = true;
  row.drain_deadline_ms.store(unix_ms() + c.cfg->drain_timeout_ms, relaxed);
  row.state.store(shm::worker_state::draining, relaxed);
  send(c, child_channel::msg_drain);
}

std::size_t master::live_workers() const {
  std::size_t n = 0;
  for (const auto& c : slots_) n += c.pid != 0;
  return n;
}

}  // namespace wslb::supervisor
