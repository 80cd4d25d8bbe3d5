#include "supervisor/master.h"

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>

#include "common/log.h"
#include "common/process.h"
#include "shm/table_ops.h"
#include "supervisor/backend_rows.h"
#include "supervisor/instance_files.h"
#include "supervisor/listener.h"
#include "supervisor/master_state.h"
#include "worker/worker_main.h"

namespace wslb::supervisor {

namespace {

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


}  // namespace

int master::run() {
  uv_loop_init(&loop_);
  loop_.data = this;
  if (!start()) {
    // Whatever start() had opened is closed, then the loop runs only to finish those closes.
    uv_walk(&loop_, [](uv_handle_t* h, void*) { if (!uv_is_closing(h)) uv_close(h, nullptr); },
            nullptr);
  }
  uv_run(&loop_, UV_RUN_DEFAULT);
  uv_loop_close(&loop_);
  return exit_code_;
}

bool master::start() {
  // A copy of the pointer: cfg_ is replaced below once backend rows are assigned.
  const std::shared_ptr<const config> initial = cfg_;
  const config& cfg = *initial;
  const auto cannot_start = [this](const std::string& why) {
    log_line(who, "%s", why.c_str());
    exit_code_ = exit_code::cannot_start;
    return false;
  };
  try {
    lock_path_ = lock_file_path(cfg.name);
    lock_fd_ = take_instance_lock(lock_path_);
  } catch (const std::exception& e) {
    return cannot_start(e.what());
  }
  if (lock_fd_ < 0) {
    std::string pid = "?";
    try {
      auto existing = shm::table_mapping::attach(cfg.name, shm::access::read_only);
      pid = std::to_string(existing->header.master_pid.load());
    } catch (const shm::table_error&) {
    }
    return cannot_start("instance '" + cfg.name + "' is already running (master pid " + pid +
                        "); choose another --name");
  }
  try {
    auto old = shm::table_mapping::attach(cfg.name, shm::access::read_only);
    const pid_t old_pid = old->header.master_pid.load();
    log_line(who, "replacing stale table of instance '%s' left by master pid %d (%s)",
             cfg.name.c_str(), old_pid, process_running(old_pid) ? "pid reused" : "not running");
  } catch (const shm::table_error&) {
    // No table, or one of another layout: create() replaces it either way.
  }

  raise_descriptor_limit();
  std::string error;
  listen_fd_ = open_listener(cfg.listen, error);
  if (listen_fd_ < 0) {
    return cannot_start("cannot listen on " + cfg.listen.to_string() + ": " + error);
  }
  try {
    table_.emplace(shm::table_mapping::create(cfg.name));
  } catch (const shm::table_error& e) {
    return cannot_start(e.what());
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
      return cannot_start(error);
    }
    cfg_ = std::make_shared<const config>(std::move(with_rows));
  }
  apply_check_settings(t, cfg.check);

  std::string socket_path;
  try {
    socket_path = control_socket_path(cfg.name);
  } catch (const std::exception& e) {
    return cannot_start(e.what());
  }
  register_commands();
  if (!control_.start(&loop_, socket_path,
                      [this](const std::string& c, control_request_ptr r) { on_command(c, r); },
                      error)) {
    return cannot_start(error);
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
  // A name was resolved once, now: say to what, since that is where connections will go.
  for (const auto& b : cfg.backends) {
    if (b.where.host != b.where.address_text()) {
      log_line(who, "backend %s is %s", b.where.to_string().c_str(),
               b.where.address_text().c_str());
    }
  }
  return true;
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

void master::register_commands() {
  const auto no_arguments = [](const std::string& verb, auto action) {
    return [verb, action](const std::string& arguments, control_request_ptr request) {
      if (!arguments.empty()) return request->finish(false, verb + " takes no arguments");
      action(std::move(request));
    };
  };
  commands_.add("restart-workers", no_arguments("restart-workers", [this](control_request_ptr r) {
    restart_workers(std::move(r), "");
  }));
  commands_.add("reload", no_arguments("reload", [this](control_request_ptr r) {
    reload(std::move(r));
  }));
  commands_.add("stop", [this](const std::string& arguments, control_request_ptr request) {
    if (arguments != "" && arguments != "graceful") {
      return request->finish(false, "stop takes no argument but 'graceful'");
    }
    begin_stop(arguments == "graceful", std::move(request));
  });
}

void master::on_command(const std::string& command, control_request_ptr request) {
  log_line(who, "control: %s", command.c_str());
  commands_.dispatch(command, std::move(request));
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
