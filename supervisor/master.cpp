#include "supervisor/master.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stdexcept>

#include "checker/checker_main.h"
#include "common/build_info.h"
#include "common/log.h"
#include "shm/table_ops.h"
#include "supervisor/agent_child.h"
#include "supervisor/backend_rows.h"
#include "supervisor/instance_files.h"
#include "supervisor/master_state.h"
#include "supervisor/privileges.h"
#include "supervisor/socket_activation.h"
#include "supervisor/tls_upkeep.h"
#include "worker/worker_main.h"

namespace wslb::supervisor {

namespace {

constexpr std::uint64_t housekeeping_ms = 100;

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

clock_reading master::now() { return {monotonic_ms(), unix_ms()}; }

int master::run() {
  uv_loop_init(&loop_);
  loop_.data = this;
  try {
    inherited_ = take_inherited_fds();
    start();
  } catch (const std::exception& e) {
    log_line(who, "%s", e.what());
    // An upgrade's predecessor hears why; it serves on and its files stay as they are.
    if (inherited_) report_upgrade(inherited_->report, false, e.what());
    exit_code_ = exit_code::cannot_start;
    // Whatever start() had opened is closed, then the loop runs only to finish those closes.
    if (ops_) ops_->close_all_channels();
    uv_walk(&loop_, [](uv_handle_t* h, void*) { if (!uv_is_closing(h)) uv_close(h, nullptr); },
            nullptr);
  }
  uv_run(&loop_, UV_RUN_DEFAULT);
  uv_loop_close(&loop_);
  return exit_code_;
}

void master::open_sockets_and_drop_privileges() {
  const config& cfg = *cfg_;
  // Reaching systemd's notify socket, like binding a privileged port, may need root.
  operations_.open_notify_socket();
  // An upgraded master serves the listener its predecessor passed on (adopt_lock_and_table),
  // and runs as the user that one already was.
  if (inherited_) return;
  std::string error;
  instance_sockets sockets;
  if (!open_instance_sockets(cfg, sockets, error)) throw std::runtime_error(error);
  listen_fd_ = sockets.listener;
  admin_fd_ = sockets.admin;
  if (cfg.run_as.user.empty()) return;
  if (!drop_privileges(cfg.run_as, error)) throw std::runtime_error(error);
  log_line(who, "running as user %s (uid %u, gid %u)", cfg.run_as.user.c_str(), cfg.run_as.uid,
           cfg.run_as.gid);
}

void master::write_binary_identity() {
  shm::table& t = table_->get();
  t.header.master_pid = getpid();
  shm::copy_fixed(t.header.master_version, shm::version_chars, binary_version());
  shm::copy_fixed(t.header.master_build_id, shm::build_id_chars, binary_build_id());
  executable_ = own_executable();
}

void master::adopt_lock_and_table() {
  const config& cfg = *cfg_;
  const std::string lock_path = lock_file_path(cfg.name);
  struct stat held{}, named{};
  if (fstat(inherited_->lock, &held) != 0 || stat(lock_path.c_str(), &named) != 0 ||
      held.st_ino != named.st_ino || held.st_dev != named.st_dev) {
    throw std::runtime_error("upgrade: the inherited lock is not " + lock_path);
  }
  int accepting = 0;
  socklen_t len = sizeof accepting;
  if (getsockopt(inherited_->listen, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) != 0 ||
      !accepting) {
    throw std::runtime_error("upgrade: the inherited listener is not a listening socket");
  }
  lock_fd_ = inherited_->lock;
  listen_fd_ = inherited_->listen;
  raise_descriptor_limit();
  // attach() refuses a table of another layout, saying what differs: the upgrade then rolls
  // back and the old master, whose layout it is, serves on.
  segment_ = recorded_table(cfg.name);
  table_.emplace(shm::table_mapping::attach(segment_, shm::access::read_write));
  table_->get().header.master_started_ms = unix_ms();
  write_binary_identity();
  config with_rows = cfg;
  read_journal(with_rows);  // the predecessor's runtime backend changes hold on
  std::string error;
  if (!apply_backends(table_->get(), with_rows, error)) throw std::runtime_error(error);
  cfg_ = std::make_shared<const config>(std::move(with_rows));
  apply_check_settings(table_->get(), cfg.check);
  log_line(who, "upgrade: adopted the listener, lock, control socket and table of generation %u",
           table_->get().header.current_generation.load());
}

void master::take_lock_and_table() {
  if (inherited_) return adopt_lock_and_table();
  // A copy of the pointer: cfg_ is replaced below once backend rows are assigned.
  const std::shared_ptr<const config> initial = cfg_;
  const config& cfg = *initial;
  lock_fd_ = take_instance_lock(lock_file_path(cfg.name));
  if (lock_fd_ < 0) {
    std::string pid = "?";
    try {
      auto existing = shm::table_mapping::attach(recorded_table(cfg.name), shm::access::read_only);
      pid = std::to_string(existing->header.master_pid.load());
    } catch (const std::runtime_error&) {
    }
    throw std::runtime_error("instance '" + cfg.name + "' is already running (master pid " + pid +
                             "); choose another --name");
  }
  // A table a killed master of this name left behind: ours (the record is in our private
  // directory), so it goes, whatever is in it.
  if (const std::string old = recorded_table(cfg.name); !old.empty()) {
    log_line(who, "removing the stale table /dev/shm/%s of instance '%s'", old.c_str(),
             cfg.name.c_str());
    shm::table_mapping::remove(old);
  }
  raise_descriptor_limit();
  segment_ = shm::new_segment_name(cfg.name);
  table_.emplace(shm::table_mapping::create(segment_));
  record_table(cfg.name, segment_);
  shm::table& t = table_->get();
  shm::copy_fixed(t.header.name, shm::name_chars, cfg.name);
  shm::copy_fixed(t.header.listen, shm::address_chars, cfg.listen.to_string());
  t.header.master_started_ms = unix_ms();
  write_binary_identity();
  t.header.listening = 1;
  config with_rows = cfg;
  read_journal(with_rows);  // backends added or removed at run time before this start
  std::string error;
  if (!apply_backends(t, with_rows, error)) throw std::runtime_error(error);
  cfg_ = std::make_shared<const config>(std::move(with_rows));
  apply_check_settings(t, cfg.check);
  publish_tls(t, cfg, unix_ms());
}

void master::start_children() {
  // No child may inherit the pipe an upgrade's predecessor reads our messages from.
  if (inherited_) restore_own_stderr(*inherited_);
  ops_ = make_ops_(&loop_, *this);
  shm::table& t = table_->get();
  generation_context ctx{*ops_, t, listen_fd_,
                         [&t, fd = listen_fd_, dir = runtime_dir()](
                             const std::shared_ptr<const config>& cfg, std::size_t row,
                             std::uint32_t number) {
    // The child runs on its copy of the snapshot: fork copies what `cfg` points to.
    return std::function<int(int)>([cfg, &t, fd, row, number, dir](int master_fd) {
      return worker::run_worker(worker::launch{*cfg, t, fd, master_fd, row, number, dir});
    });
  }};
  children_.emplace(std::move(ctx));
  children_->set_observer([this](transaction_event e, std::uint32_t, const std::string& text) {
    operations_.on_transaction(e, text);
  });
  children_->reap_children(now());  // children a previous life of this pid left (none in practice)
  // After an upgrade the generations go on counting from the predecessor's.
  children_->start_first(cfg_, now(), inherited_ ? t.header.current_generation + 1 : 1);
  // The checker starts with the serving generation's configuration, and so does each respawn.
  children_->add_helper(
      helper_child(
          [this, &t] {
            std::shared_ptr<const config> cfg = children_->serving().cfg();
            return child_spec{checker_id, "the checker", -1, [cfg, &t](int master_fd) {
                                return checker::run_checker(*cfg, t, master_fd);
                              }};
          },
          [&t](pid_t pid, bool respawn) {
            t.checker.pid.store(pid, std::memory_order_relaxed);
            if (respawn) t.checker.restarts.fetch_add(1, std::memory_order_relaxed);
          }),
      now());
  if (cfg_->cluster.enabled()) children_->add_helper(make_cluster_agent(cfg_, t), now());
}

void master::start() {
  open_sockets_and_drop_privileges();
  take_lock_and_table();
  apply_journal();
  register_commands();
  start_control(inherited_ ? inherited_->control : -1);
  std::string error;
  if (!operations_.start(&loop_, *cfg_, table_->get(), admin_fd_, error)) {
    throw std::runtime_error(error);
  }

  const int signums[] = {SIGCHLD, SIGHUP, SIGUSR1, SIGUSR2, SIGQUIT, SIGTERM, SIGINT};
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
                 [](uv_timer_t* h) { static_cast<master*>(h->data)->housekeeping(); },
                 housekeeping_ms, housekeeping_ms);

  start_children();
  // Status shows the rebalance mode from the first moment the workers run.
  rebalancer_.tick(table_->get(), cfg_->shaping, unix_ms());
  const config& cfg = *cfg_;
  log_line(who, "instance '%s' listening on %s with %u workers, %zu backends, balance %s, mode %s",
           cfg.name.c_str(), cfg.listen.to_string().c_str(), cfg.workers, cfg.backends.size(),
           to_string(cfg.balance.mode), to_string(cfg.mode));
  // A name was resolved once, now: say to what, since that is where connections will go.
  for (const auto& b : cfg.backends) {
    if (b.where.host != b.where.address_text()) {
      log_line(who, "backend %s is %s", b.where.to_string().c_str(),
               b.where.address_text().c_str());
    }
  }
}

void master::start_control(int inherited_fd) {
  control_.start(&loop_, control_socket_path(cfg_->name),
                 [this](const std::string& line, control_request_ptr r) {
                   log_line(who, "control: %s", line.c_str());
                   commands_.dispatch(line, std::move(r));
                 },
                 inherited_fd);
}

void master::housekeeping() {
  const clock_reading at = now();
  children_->tick(at);
  operations_.tick();
  answer_waiting_rebalances(at.unix_ms);
  if (stopping_) {
    check_stop_progress();
    return;
  }
  release_drained_backends(table_->get());
  rebalancer_.tick(table_->get(), children_->serving().cfg()->shaping, unix_ms());
  rotate_ticket_keys_when_due(table_->get(), *children_->serving().cfg(), at.unix_ms);
}

void master::on_child_message(child_id id, char message) {
  children_->on_child_message(id, message, now());
  if (inherited_ && inherited_->report >= 0 && children_->serving().all_ready()) {
    const std::string text = "master pid " + std::to_string(getpid()) + " (wslb " +
                             binary_version() + ", build " + binary_build_id() +
                             ") serves generation " +
                             std::to_string(children_->serving().number());
    log_line(who, "upgrade: %s", text.c_str());
    report_upgrade(inherited_->report, true, text);
  }
}

void master::on_signal(int signum) {
  switch (signum) {
    case SIGCHLD:
      if (retiring_) watch_upgraded_master();  // before reap_children reaps it unrecognised
      children_->reap_children(now());
      if (stopping_) check_stop_progress();
      break;
    case SIGHUP: reload(nullptr); break;
    case SIGUSR1: reopen_logs(nullptr); break;
    case SIGUSR2: restart_workers(nullptr); break;
    case SIGQUIT: begin_stop(true, nullptr); break;
    case SIGTERM:
    case SIGINT: begin_stop(false, nullptr); break;
    default: break;
  }
}

int run_master(const config& cfg, const std::vector<std::string>& run_args,
               process_ops_factory make_ops) {
  master m(cfg, run_args, std::move(make_ops));
  return m.run();
}

int run_master(const config& cfg, const std::vector<std::string>& run_args) {
  return run_master(cfg, run_args, [](uv_loop_t* loop, child_events& events) {
    return std::make_unique<process_ops>(loop, events);
  });
}

}  // namespace wslb::supervisor
