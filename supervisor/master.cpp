#include "supervisor/master.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "checker/checker_main.h"
#include "common/build_info.h"
#include "common/handover_format.h"
#include "common/log.h"
#include "shm/table_export.h"
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
    // A table rebuilt for this master goes with it; the predecessor's is untouched.
    if (!predecessor_segment_.empty()) shm::table_mapping::remove(segment_);
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
  // An upgraded master serves the listener its predecessor passed on (adopt_lock_and_table)
  // and its admin listener, and runs as the user that one already was.
  if (inherited_) {
    admin_fd_ = inherited_->admin;
    if (cfg.admin.enabled && admin_fd_ < 0) {
      log_line(who, "upgrade: the predecessor passed no admin listener; --admin %s stays off "
               "until the next stop and run", cfg.admin.where.to_string().c_str());
    }
    return;
  }
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
  // The table comes by descriptor, and must be the one this instance's record names (a
  // descriptor of anything else, or a record another process rewrote, is refused).
  segment_ = recorded_table(cfg.name);
  struct stat passed{}, recorded{};
  if (segment_.empty() || fstat(inherited_->table, &passed) != 0 ||
      stat(("/dev/shm/" + segment_).c_str(), &recorded) != 0 ||
      passed.st_ino != recorded.st_ino || passed.st_dev != recorded.st_dev) {
    throw std::runtime_error("upgrade: the inherited table is not /dev/shm/" + segment_ +
                             ", the table instance '" + cfg.name + "' records");
  }
  const std::uint32_t their_layout = shm::table_mapping::layout_version_at(inherited_->table);
  if (their_layout == shm::layout_version) {
    table_.emplace(
        shm::table_mapping::attach_descriptor(inherited_->table, shm::access::read_write));
    const shm::table_header& h = table_->get().header;
    if (std::string(h.name, strnlen(h.name, shm::name_chars)) != cfg.name) {
      throw std::runtime_error("upgrade: the inherited table is not instance '" + cfg.name +
                               "''s");
    }
  } else {
    rebuild_table(their_layout);
  }
  close(inherited_->table);  // the mapping keeps its own descriptor
  inherited_->table = -1;
  table_->get().header.master_started_ms = unix_ms();
  write_binary_identity();
  config with_rows = cfg;
  read_journal(with_rows);  // the predecessor's runtime backend changes hold on
  std::string error;
  if (!apply_backends(table_->get(), with_rows, error)) throw std::runtime_error(error);
  cfg_ = std::make_shared<const config>(std::move(with_rows));
  apply_check_settings(table_->get(), cfg.check);
  if (!predecessor_segment_.empty()) publish_tls(table_->get(), cfg, unix_ms());
  log_line(who, "upgrade: adopted the listener, lock, control socket%s and table of generation "
           "%u", admin_fd_ >= 0 ? ", admin listener" : "",
           table_->get().header.current_generation.load());
}

void master::rebuild_table(std::uint32_t their_layout) {
  const config& cfg = *cfg_;
  const std::string differs = "the table has layout version " + std::to_string(their_layout) +
                              ", this wslb's is " + std::to_string(shm::layout_version);
  if (inherited_->state < 0) {
    throw std::runtime_error("upgrade: " + differs +
                             " and the predecessor passed no export of its state to rebuild "
                             "it from");
  }
  const std::string text = read_sealed_state(inherited_->state);
  close(inherited_->state);
  inherited_->state = -1;
  const shm::export_header exported = shm::read_export_header(text);
  // Only a name of this user's instance, fresh: nothing planted elsewhere is created or removed.
  const std::string prefix = "wslb." + std::to_string(geteuid()) + "." + cfg.name + ".";
  if (exported.instance != cfg.name || exported.names.segment != segment_ ||
      exported.names.successor.size() != segment_.size() ||
      exported.names.successor.rfind(prefix, 0) != 0 || exported.names.successor == segment_) {
    throw std::runtime_error("upgrade: the predecessor's state export is not instance '" +
                             cfg.name + "''s table " + segment_);
  }
  table_.emplace(shm::table_mapping::create(exported.names.successor));
  shm::export_names names;
  if (const std::string why = shm::import_table(text, table_->get(), names); !why.empty()) {
    shm::table_mapping::remove(exported.names.successor);
    throw std::runtime_error("upgrade: " + differs + ", and its state export cannot be read: " +
                             why);
  }
  predecessor_segment_ = segment_;
  segment_ = exported.names.successor;
  shm::table& t = table_->get();
  t.header.listening = 1;
  std::uint64_t inherited = 0, handing_over = 0;
  for (const shm::backend_row& b : t.backends) inherited += b.inherited_active.load();
  for (const shm::worker_row& w : t.workers) {
    handing_over += w.state.load() == shm::worker_state::predecessor;
  }
  log_line(who, "upgrade: %s: rebuilt it as /dev/shm/%s from the predecessor's state (%llu "
           "connections inherited, %llu of its workers to hand over)", differs.c_str(),
           segment_.c_str(), static_cast<unsigned long long>(inherited),
           static_cast<unsigned long long>(handing_over));
  watch_predecessor();
}

void master::watch_predecessor() {
  // The predecessor forked this process: it is the parent until it exits.
  predecessor_fd_ = static_cast<int>(syscall(SYS_pidfd_open, getppid(), 0));
  if (predecessor_fd_ < 0) {
    throw std::runtime_error(std::string("upgrade: pidfd_open of the predecessor: ") +
                             strerror(errno));
  }
  uv_poll_init(&loop_, &predecessor_poll_, predecessor_fd_);
  predecessor_poll_.data = this;
  uv_poll_start(&predecessor_poll_, UV_READABLE, [](uv_poll_t* h, int, int) {
    static_cast<master*>(h->data)->on_predecessor_gone();
  });
}

void master::stop_watching_predecessor() {
  if (predecessor_fd_ < 0 || uv_is_closing(reinterpret_cast<uv_handle_t*>(&predecessor_poll_))) {
    return;
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&predecessor_poll_), [](uv_handle_t* h) {
    auto* m = static_cast<master*>(h->data);
    close(m->predecessor_fd_);
    m->predecessor_fd_ = -1;
  });
}

void master::on_predecessor_gone() {
  stop_watching_predecessor();
  shm::table& t = table_->get();
  for (shm::worker_row& w : t.workers) {
    if (w.state.load() != shm::worker_state::predecessor) continue;
    w.state = shm::worker_state::empty;
    w.pid = 0;
    w.generation = 0;
  }
  // What was not handed over closed there: nothing of it is live any more.
  for (shm::backend_row& b : t.backends) b.inherited_active.store(0);
  shm::table_mapping::remove(predecessor_segment_);
  log_line(who, "upgrade: the predecessor master is gone; its table /dev/shm/%s removed",
           predecessor_segment_.c_str());
}

void master::report_ready_to_predecessor() {
  const shm::table& t = table_->get();
  const std::uint32_t number = children_->serving().number();
  for (std::size_t row = 0; row < shm::worker_rows_in_use(t); ++row) {
    const shm::worker_row& w = t.workers[row];
    if (w.generation.load() != number || w.state.load() != shm::worker_state::running) continue;
    report_successor_worker(inherited_->report, successor_worker{row, w.pid.load(), number});
  }
  // From now on `status` and the CLI find this table (a failed upgrade never got here).
  if (!predecessor_segment_.empty()) record_table(cfg_->name, segment_);
  operations_.announce_main_pid();
  const std::string text = "master pid " + std::to_string(getpid()) + " (wslb " +
                           binary_version() + ", build " + binary_build_id() + ", layout " +
                           std::to_string(shm::layout_version) +
                           (predecessor_segment_.empty() ? "" : ", table rebuilt") +
                           ", handover format " + std::to_string(handover::format_version) +
                           ") serves generation " + std::to_string(number);
  log_line(who, "upgrade: %s", text.c_str());
  report_upgrade(inherited_->report, true, text);
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
    report_ready_to_predecessor();
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
