#include "supervisor/master.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>

#include "checker/checker_main.h"
#include "common/exit_codes.h"
#include "common/log.h"
#include "common/run_options.h"
#include "shm/table.h"
#include "shm/table_ops.h"
#include "supervisor/backend_rows.h"
#include "supervisor/child_process.h"
#include "supervisor/control_server.h"
#include "supervisor/instance_files.h"
#include "supervisor/listener.h"
#include "supervisor/respawn_policy.h"
#include "worker/worker_main.h"

namespace wslb::supervisor {

namespace {

constexpr auto relaxed = std::memory_order_relaxed;
constexpr const char* who = "master";
// How long new workers may take to report ready before a restart is abandoned.
constexpr std::int64_t ready_timeout_ms = 10'000;
// Beyond its drain deadline a worker gets this long (its close window included) before the
// master kills it.
constexpr std::int64_t drain_kill_grace_ms = 5'000;
constexpr std::int64_t stop_kill_grace_ms = 3'000;

// One child process as the master sees it: a worker slot (same index as its table row) or the
// checker.
class master;

// Watches one child's end of the channel. Heap-allocated per spawn: a closing uv handle must
// outlive its close callback, and a slot may be respawned before that callback has run.
struct channel_watch {
  uv_poll_t poll;
  master* owner;
  std::size_t slot;  // shm::max_worker_slots for the checker
};

struct child {
  pid_t pid = 0;
  int channel = -1;         // master's end of the socketpair
  channel_watch* watch = nullptr;
  std::uint32_t generation = 0;
  std::int64_t started_ms = 0;  // monotonic
  bool ready = false;
  bool asked_to_exit = false;   // drain or stop was sent: its exit is not a crash
  std::shared_ptr<const config> cfg;
  respawn_policy policy;
  uv_timer_t backoff_timer{};
};

struct pending_restart {
  std::uint32_t generation = 0;
  control_request_ptr request;  // may be null (signal-initiated)
  std::int64_t deadline_ms = 0;
  std::string summary;          // what the reload changed, for the reply
};

class master {
 public:
  master(const config& cfg, std::vector<std::string> run_args)
      : cfg_(std::make_shared<const config>(cfg)), run_args_(std::move(run_args)) {}

  int run();

 private:
  bool start();
  void spawn_worker(std::size_t slot, std::uint32_t generation);
  void spawn_checker();
  std::optional<std::size_t> free_slot() const;
  void reap_children();
  void on_worker_exit(std::size_t slot, int status);
  void on_checker_exit(int status);
  void watch_channel(child& c, std::size_t slot);
 public:
  void on_channel_readable(std::size_t slot);
 private:
  void close_channel(child& c);
  void drain_slot(std::size_t slot);
  void send(child& c, char message);

  void restart_workers(control_request_ptr request, std::string summary);
  void check_restart_progress();
  void reload(control_request_ptr request);
  void begin_stop(bool graceful, control_request_ptr request);
  void check_stop_progress();
  void finish_stop();
  void housekeeping();
  void on_command(const std::string& command, control_request_ptr request);
  void on_signal(int signum);
  std::size_t live_workers() const;

  uv_loop_t loop_{};
  std::shared_ptr<const config> cfg_;
  std::vector<std::string> run_args_;
  int lock_fd_ = -1;
  int listen_fd_ = -1;
  std::optional<shm::table_mapping> table_;
  control_server control_;
  std::array<child, shm::max_worker_slots> slots_{};
  child checker_;
  std::uint32_t generation_ = 0;
  std::optional<pending_restart> restart_;
  bool stopping_ = false;
  bool stopped_ = false;
  bool graceful_ = false;
  std::int64_t stop_deadline_ms_ = 0;
  std::vector<control_request_ptr> stop_requests_;
  std::array<uv_signal_t, 6> signals_{};
  uv_timer_t housekeeping_timer_{};
  int exit_code_ = exit_code::ok;
};

std::string describe_exit(int status) {
  if (WIFSIGNALED(status)) return std::string("killed by signal ") + strsignal(WTERMSIG(status));
  return "exit code " + std::to_string(WEXITSTATUS(status));
}

void raise_descriptor_limit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
  getrlimit(RLIMIT_NOFILE, &lim);
  log_line(who, "descriptor limit %llu: each worker can hold about %zu client connections",
           static_cast<unsigned long long>(lim.rlim_cur),
           worker::max_connections_for(static_cast<std::size_t>(lim.rlim_cur)));
}

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

// True when `pid` is a live process (a stale table's master may be long gone).
bool process_alive(pid_t pid) { return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM); }

}  // namespace

int master::run() {
  uv_loop_init(&loop_);
  loop_.data = this;
  if (!start()) {
    uv_walk(&loop_, [](uv_handle_t* h, void*) { if (!uv_is_closing(h)) uv_close(h, nullptr); },
            nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
    return exit_code_;
  }
  uv_run(&loop_, UV_RUN_DEFAULT);
  uv_loop_close(&loop_);
  return exit_code_;
}

bool master::start() {
  // A copy of the pointer: cfg_ is replaced below once backend rows are assigned.
  const std::shared_ptr<const config> initial = cfg_;
  const config& cfg = *initial;
  try {
    lock_fd_ = take_instance_lock(cfg.name);
  } catch (const std::exception& e) {
    log_line(who, "%s", e.what());
    exit_code_ = exit_code::cannot_start;
    return false;
  }
  if (lock_fd_ < 0) {
    std::string pid = "?";
    try {
      auto existing = shm::table_mapping::attach(cfg.name, shm::access::read_only);
      pid = std::to_string(existing->header.master_pid.load());
    } catch (const shm::table_error&) {
    }
    log_line(who, "instance '%s' is already running (master pid %s); choose another --name",
             cfg.name.c_str(), pid.c_str());
    exit_code_ = exit_code::cannot_start;
    return false;
  }
  try {
    auto old = shm::table_mapping::attach(cfg.name, shm::access::read_only);
    const pid_t old_pid = old->header.master_pid.load();
    log_line(who, "replacing stale table of instance '%s' left by master pid %d (%s)",
             cfg.name.c_str(), old_pid, process_alive(old_pid) ? "pid reused" : "not running");
  } catch (const shm::table_error&) {
    // No table, or one of another layout: create() replaces it either way.
  }

  raise_descriptor_limit();
  std::string error;
  listen_fd_ = open_listener(cfg.listen, error);
  if (listen_fd_ < 0) {
    log_line(who, "cannot listen on %s: %s", cfg.listen.to_string().c_str(), error.c_str());
    exit_code_ = exit_code::cannot_start;
    return false;
  }
  try {
    table_.emplace(shm::table_mapping::create(cfg.name));
  } catch (const shm::table_error& e) {
    log_line(who, "%s", e.what());
    exit_code_ = exit_code::cannot_start;
    return false;
  }
  shm::table& t = table_->get();
  shm::copy_fixed(t.header.name, shm::name_chars, cfg.name);
  shm::copy_fixed(t.header.listen, shm::address_chars, cfg.listen.to_string());
  t.header.master_pid = getpid();
  t.header.master_started_ms = unix_ms();
  t.header.workers_per_generation = cfg.workers;
  t.header.listening = 1;
  {
    config with_rows = cfg;
    if (!apply_backends(t, with_rows, error)) {
      log_line(who, "%s", error.c_str());
      exit_code_ = exit_code::cannot_start;
      return false;
    }
    cfg_ = std::make_shared<const config>(std::move(with_rows));
  }
  apply_check_settings(t, cfg.check);

  std::string socket_path;
  try {
    socket_path = control_socket_path(cfg.name);
  } catch (const std::exception& e) {
    log_line(who, "%s", e.what());
    exit_code_ = exit_code::cannot_start;
    return false;
  }
  if (!control_.start(&loop_, socket_path,
                      [this](const std::string& c, control_request_ptr r) { on_command(c, r); },
                      error)) {
    log_line(who, "%s", error.c_str());
    exit_code_ = exit_code::cannot_start;
    return false;
  }

  const int signums[] = {SIGCHLD, SIGHUP, SIGUSR2, SIGQUIT, SIGTERM, SIGINT};
  for (std::size_t i = 0; i < signals_.size(); ++i) {
    uv_signal_init(&loop_, &signals_[i]);
    signals_[i].data = this;
    uv_signal_start(&signals_[i],
                    [](uv_signal_t* h, int signum) { static_cast<master*>(h->data)->on_signal(signum); },
                    signums[i]);
  }
  signal(SIGPIPE, SIG_IGN);
  uv_timer_init(&loop_, &housekeeping_timer_);
  housekeeping_timer_.data = this;
  uv_timer_start(&housekeeping_timer_,
                 [](uv_timer_t* h) { static_cast<master*>(h->data)->housekeeping(); }, 250, 250);
  for (auto& c : slots_) {
    uv_timer_init(&loop_, &c.backoff_timer);
  }
  uv_timer_init(&loop_, &checker_.backoff_timer);

  reap_children();  // children a previous life of this pid left (none in practice)
  spawn_checker();
  generation_ = 1;
  t.header.current_generation = generation_;
  for (unsigned i = 0; i < cfg_->workers; ++i) spawn_worker(i, generation_);
  log_line(who, "instance '%s' listening on %s with %u workers, %zu backends, balance %s, mode %s",
           cfg.name.c_str(), cfg.listen.to_string().c_str(), cfg_->workers, cfg.backends.size(),
           to_string(cfg.balance.mode), to_string(cfg.mode));
  return true;
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

void master::spawn_worker(std::size_t slot, std::uint32_t generation) {
  shm::table& t = table_->get();
  child& c = slots_[slot];
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, pair) != 0) {
    log_line(who, "cannot create a channel for worker %zu: %s", slot, strerror(errno));
    return;
  }
  shm::worker_row& row = t.workers[slot];
  shm::clear_worker_row(t, slot);
  row.generation.store(generation, relaxed);
  row.state.store(shm::worker_state::starting, relaxed);
  row.started_ms.store(unix_ms(), relaxed);
  row.backoff_until_ms.store(0, relaxed);
  if (slot + 1 > t.header.slot_high_water.load()) t.header.slot_high_water = static_cast<std::uint32_t>(slot + 1);

  c.cfg = cfg_;
  const config& cfg = *c.cfg;
  const int listen_fd = listen_fd_;
  const int worker_end = pair[1];
  const pid_t pid = fork_child({listen_fd, worker_end}, [&cfg, &t, listen_fd, worker_end, slot,
                                                         generation]() {
    if (const int code = injected_start_failure_for_test(); code >= 0) return code;
    return worker::run_worker(worker::launch{cfg, t, listen_fd, worker_end, slot, generation});
  });
  close(pair[1]);
  if (pid < 0) {
    log_line(who, "cannot fork worker %zu: %s", slot, strerror(errno));
    close(pair[0]);
    row.state.store(shm::worker_state::empty, relaxed);
    return;
  }
  c.pid = pid;
  c.channel = pair[0];
  c.generation = generation;
  c.started_ms = monotonic_ms();
  c.ready = false;
  c.asked_to_exit = false;
  row.pid.store(pid, relaxed);
  watch_channel(c, slot);
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
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, pair) != 0) {
    log_line(who, "cannot create a channel for the checker: %s", strerror(errno));
    return;
  }
  checker_.cfg = cfg_;
  const config& cfg = *checker_.cfg;
  const int end = pair[1];
  const pid_t pid =
      fork_child({end}, [&cfg, &t, end]() { return checker::run_checker(cfg, t, end); });
  close(pair[1]);
  if (pid < 0) {
    log_line(who, "cannot fork the checker: %s", strerror(errno));
    close(pair[0]);
    return;
  }
  checker_.pid = pid;
  checker_.channel = pair[0];
  checker_.started_ms = monotonic_ms();
  checker_.asked_to_exit = false;
  t.checker.pid.store(pid, relaxed);
  watch_channel(checker_, shm::max_worker_slots);
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
    if (buf[i] == worker::msg_ready && !c.ready) {
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
  send(c, worker::msg_drain);
}

std::size_t master::live_workers() const {
  std::size_t n = 0;
  for (const auto& c : slots_) n += c.pid != 0;
  return n;
}

void master::restart_workers(control_request_ptr request, std::string summary) {
  if (stopping_) {
    if (request) request->finish(false, "the instance is stopping");
    return;
  }
  if (restart_) {
    if (request) request->finish(false, "a restart is already in progress (generation " +
                                            std::to_string(restart_->generation) + " starting)");
    return;
  }
  const std::uint32_t next = generation_ + 1;
  std::vector<std::size_t> slots;
  for (unsigned i = 0; i < cfg_->workers; ++i) {
    auto slot = free_slot();
    if (!slot) {
      for (auto s : slots) {
        slots_[s].asked_to_exit = true;
        send(slots_[s], worker::msg_stop);
      }
      if (request) request->finish(false, "no free worker slot: too many generations still draining");
      return;
    }
    spawn_worker(*slot, next);
    slots.push_back(*slot);
  }
  restart_ = pending_restart{next, std::move(request), monotonic_ms() + ready_timeout_ms,
                             std::move(summary)};
  log_line(who, "starting generation %u (%u workers)", next, cfg_->workers);
  check_restart_progress();
}

void master::check_restart_progress() {
  if (!restart_) return;
  const std::uint32_t next = restart_->generation;
  std::size_t ready = 0;
  for (const auto& c : slots_) ready += c.pid != 0 && c.generation == next && c.ready;
  if (ready >= cfg_->workers) {
    // The new generation accepts: only now do the old ones stop accepting, so the listener
    // always has someone to serve it.
    std::uint64_t draining_connections = 0;
    std::size_t draining_workers = 0;
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      const bool old_process = slots_[i].pid != 0 && slots_[i].generation != next &&
                               !slots_[i].asked_to_exit;
      const bool old_backoff = slots_[i].pid == 0 && slots_[i].generation != next &&
                               uv_is_active(reinterpret_cast<uv_handle_t*>(&slots_[i].backoff_timer));
      if (old_process || old_backoff) {
        draining_connections += table_->get().workers[i].connections.load(relaxed);
        draining_workers += old_process;
        drain_slot(i);
      }
    }
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      auto& row = table_->get().workers[i];
      if (slots_[i].pid == 0 && row.state.load() == shm::worker_state::failed) {
        row.state.store(shm::worker_state::empty);  // superseded by the new generation
      }
    }
    const std::uint32_t previous = generation_;
    generation_ = next;
    table_->get().header.current_generation = next;
    std::string message = "generation " + std::to_string(next) + " running " +
                          std::to_string(cfg_->workers) + " workers; generation " +
                          std::to_string(previous) + " draining " +
                          std::to_string(draining_workers) + " workers with " +
                          std::to_string(draining_connections) + " connections (drain timeout " +
                          std::to_string(cfg_->drain_timeout_ms / 1000.0).substr(0, 5) + " s)";
    if (!restart_->summary.empty()) message = restart_->summary + "; " + message;
    log_line(who, "%s", message.c_str());
    if (restart_->request) restart_->request->finish(true, message);
    restart_.reset();
    return;
  }
  if (monotonic_ms() > restart_->deadline_ms) {
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      if (slots_[i].generation == next) {
        if (slots_[i].pid != 0) {
          slots_[i].asked_to_exit = true;
          kill(slots_[i].pid, SIGKILL);
        } else {
          drain_slot(i);
        }
      }
    }
    const std::string message = "generation " + std::to_string(next) + " did not start within " +
                                std::to_string(ready_timeout_ms / 1000) +
                                " s; generation " + std::to_string(generation_) +
                                " keeps serving";
    log_line(who, "%s", message.c_str());
    if (restart_->request) restart_->request->finish(false, message);
    restart_.reset();
  }
}

void master::reload(control_request_ptr request) {
  auto fail = [&](const std::string& why) {
    const std::string message = "reload refused, configuration unchanged: " + why;
    log_line(who, "%s", message.c_str());
    if (request) request->finish(false, message);
  };
  if (stopping_) return fail("the instance is stopping");
  if (restart_) return fail("a restart is in progress");
  config next;
  const run_parse_result parsed = parse_run_args(run_args_, next);
  if (!parsed.ok) return fail(parsed.message);
  if (next.name != cfg_->name) return fail("--name cannot change on reload");
  if (next.listen.to_string() != cfg_->listen.to_string()) {
    return fail("--listen cannot change on reload (the listener stays open for the instance's "
                "life); stop and run again to move it");
  }
  std::string summary;
  for (const auto& b : next.backends) {
    bool known = false;
    for (const auto& old : cfg_->backends) {
      if (old.where.to_string() == b.where.to_string()) {
        known = true;
        if (old.weight != b.weight) {
          summary += " ~" + b.where.to_string() + " weight " + std::to_string(old.weight) +
                     "->" + std::to_string(b.weight);
        }
      }
    }
    if (!known) summary += " +" + b.where.to_string();
  }
  for (const auto& old : cfg_->backends) {
    bool kept = false;
    for (const auto& b : next.backends) kept |= old.where.to_string() == b.where.to_string();
    if (!kept) summary += " -" + old.where.to_string();
  }
  std::string error;
  shm::table& t = table_->get();
  if (!apply_backends(t, next, error)) return fail(error);
  apply_check_settings(t, next.check);
  t.header.workers_per_generation = next.workers;
  cfg_ = std::make_shared<const config>(std::move(next));
  const std::string text = "configuration reloaded" +
                           (summary.empty() ? std::string() : " (backends:" + summary + ")");
  restart_workers(std::move(request), text);
}

void master::begin_stop(bool graceful, control_request_ptr request) {
  if (request) stop_requests_.push_back(request);
  if (stopping_ && (graceful || !graceful_)) {
    check_stop_progress();
    return;  // already stopping at least this fast
  }
  const bool upgrade_to_fast = stopping_ && !graceful;
  stopping_ = true;
  graceful_ = graceful;
  shm::table& t = table_->get();
  t.header.stopping = 1;
  if (restart_) {
    if (restart_->request) restart_->request->finish(false, "the instance is stopping");
    restart_.reset();
  }
  // Closing the listener first: a graceful stop takes no new clients while it drains.
  if (listen_fd_ >= 0) {
    close(listen_fd_);
    listen_fd_ = -1;
    t.header.listening = 0;
  }
  if (!upgrade_to_fast) {
    log_line(who, "%s stop: listener closed, %s", graceful ? "graceful" : "fast",
             graceful ? "draining workers" : "closing all connections");
  }
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    uv_timer_stop(&slots_[i].backoff_timer);
    if (slots_[i].pid == 0) {
      t.workers[i].state.store(shm::worker_state::empty, relaxed);
      continue;
    }
    if (graceful) {
      if (!slots_[i].asked_to_exit) drain_slot(i);
    } else {
      slots_[i].asked_to_exit = true;
      send(slots_[i], worker::msg_stop);
    }
  }
  std::int64_t longest_drain = 0;
  for (const auto& c : slots_) {
    if (c.pid != 0 && c.cfg) longest_drain = std::max<std::int64_t>(longest_drain, c.cfg->drain_timeout_ms);
  }
  stop_deadline_ms_ = monotonic_ms() + (graceful ? longest_drain + drain_kill_grace_ms
                                                 : stop_kill_grace_ms);
  check_stop_progress();
}

void master::check_stop_progress() {
  if (live_workers() > 0) {
    if (monotonic_ms() > stop_deadline_ms_) {
      for (auto& c : slots_) {
        if (c.pid != 0) {
          log_line(who, "worker pid %d did not exit in time; killing it", c.pid);
          kill(c.pid, SIGKILL);
        }
      }
      stop_deadline_ms_ = monotonic_ms() + stop_kill_grace_ms;
    }
    return;
  }
  if (checker_.pid != 0) {
    if (!checker_.asked_to_exit) {
      checker_.asked_to_exit = true;
      send(checker_, worker::msg_stop);
      kill(checker_.pid, SIGTERM);
    }
    return;
  }
  finish_stop();
}

void master::finish_stop() {
  if (stopped_) return;
  stopped_ = true;
  uv_timer_stop(&housekeeping_timer_);
  shm::table_mapping::remove(cfg_->name);
  control_.stop();
  if (lock_fd_ >= 0) {
    unlink(lock_file_path(cfg_->name).c_str());
    close(lock_fd_);
    lock_fd_ = -1;
  }
  log_line(who, "stopped");
  for (auto& r : stop_requests_) r->finish(true, "stopped");
  stop_requests_.clear();
  for (auto& s : signals_) uv_close(reinterpret_cast<uv_handle_t*>(&s), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&housekeeping_timer_), nullptr);
  for (auto& c : slots_) {
    close_channel(c);
    uv_close(reinterpret_cast<uv_handle_t*>(&c.backoff_timer), nullptr);
  }
  close_channel(checker_);
  uv_close(reinterpret_cast<uv_handle_t*>(&checker_.backoff_timer), nullptr);
}

void master::housekeeping() {
  if (stopping_) {
    reap_children();
    check_stop_progress();
    return;
  }
  check_restart_progress();
  release_drained_backends(table_->get());
  const std::int64_t now = unix_ms();
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    child& c = slots_[i];
    const shm::worker_row& row = table_->get().workers[i];
    if (c.pid != 0 && c.asked_to_exit && row.drain_deadline_ms.load(relaxed) != 0 &&
        now > row.drain_deadline_ms.load(relaxed) + drain_kill_grace_ms) {
      log_line(who, "worker %zu (pid %d) still alive %lld ms after its drain deadline; killing it",
               i, c.pid, static_cast<long long>(drain_kill_grace_ms));
      kill(c.pid, SIGKILL);
    }
  }
}

void master::on_command(const std::string& command, control_request_ptr request) {
  log_line(who, "control: %s", command.c_str());
  if (command == "restart-workers") return restart_workers(std::move(request), "");
  if (command == "reload") return reload(std::move(request));
  if (command == "stop") return begin_stop(false, std::move(request));
  if (command == "stop graceful") return begin_stop(true, std::move(request));
  request->finish(false, "unknown command '" + command + "'");
}

void master::on_signal(int signum) {
  switch (signum) {
    case SIGCHLD: reap_children(); break;
    case SIGHUP: reload(nullptr); break;
    case SIGUSR2: restart_workers(nullptr, ""); break;
    case SIGQUIT: begin_stop(true, nullptr); break;
    case SIGTERM:
    case SIGINT: begin_stop(false, nullptr); break;
    default: break;
  }
}

int run_master(const config& cfg, const std::vector<std::string>& run_args) {
  master m(cfg, run_args);
  return m.run();
}

}  // namespace wslb::supervisor
