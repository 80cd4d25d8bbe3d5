// The master process's own state, shared by the files that implement it: master.cpp (start-up,
// signals, housekeeping, the end) and master_commands.cpp (restart, reload, stop). Everything
// about children and generations lives in child_table; this is the loop, the files and the
// commands around it. Internal to supervisor/: nothing outside includes it.
#pragma once

#include <uv.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/exit_codes.h"
#include "shm/table.h"
#include "supervisor/binary_upgrade.h"
#include "supervisor/child_table.h"
#include "supervisor/control_server.h"
#include "supervisor/master.h"
#include "supervisor/backend_overrides.h"
#include "supervisor/operations.h"
#include "supervisor/process_ops.h"
#include "supervisor/rebalancer.h"

namespace wslb::supervisor {

inline constexpr const char* who = "master";

// One backend as `backend list` and the answers of `backend ...` show it (backend_commands.cpp).
std::string backend_json(const shm::table& t, const backend_config& b);
std::string backend_text(const shm::table& t, const backend_config& b);
// "no backend 'ADDRESS' (configured: ...)", the answer to a command naming an unknown backend.
std::string no_such_backend(const config& serving, const std::string& address);

class master : public child_events {
 public:
  master(const config& cfg, std::vector<std::string> run_args, process_ops_factory make_ops)
      : cfg_(std::make_shared<const config>(cfg)),
        run_args_(std::move(run_args)),
        make_ops_(std::move(make_ops)) {}

  int run();
  void on_child_message(child_id id, char message) override;

 private:
  // Start-up: each step throws std::runtime_error (shm::table_error is one) with the message
  // for the operator; start() catches them in one place.
  void start();
  // The sockets (bound, or passed by systemd) and then the privilege drop: before anything
  // else is created, so that all the rest belongs to --user.
  void open_sockets_and_drop_privileges();
  void take_lock_and_table();
  // Upgrade start-up: the predecessor's lock, listener and table instead of new ones.
  void adopt_lock_and_table();
  // Upgrade start-up, the table passed at `fd` being of another layout: a table of this
  // layout rebuilt from the predecessor's state export.
  void rebuild_table(std::uint32_t their_layout);
  // After a rebuild: watches the predecessor master; once it is gone (its workers went
  // before it), its rows and inherited counts are cleared and its table removed.
  void watch_predecessor();
  void on_predecessor_gone();
  void stop_watching_predecessor();
  // Upgrade, once this master's generation is ready: names its workers to the predecessor,
  // records a rebuilt table, and reports "R ...".
  void report_ready_to_predecessor();
  // Writes this master's pid, version and build id into the table header.
  void write_binary_identity();
  void start_children();

  // Commands (master_commands.cpp).
  void register_commands();
  // `wslb backend ...` (backend_commands.cpp) and the state journal behind it.
  void backend_command(const std::string& arguments, control_request_ptr request);
  // At start-up, before the rows are given: reads the state file, and the backends added or
  // removed at run time join `cfg` (backend_set_commands.cpp).
  void read_journal(config& cfg);
  // Once the rows are given: the overrides apply.
  void apply_journal();
  std::string state_file_path() const;
  // `backend add SPEC` and `backend remove ADDRESS [drain=MS]` (backend_set_commands.cpp):
  // the serving generation's backends change without a new generation.
  void add_backend(const std::string& spec, bool json, control_request_ptr request);
  void remove_backend(const std::string& address, std::uint32_t drain_ms, bool json,
                      control_request_ptr request);
  // `backend reset`: backends added at run time go (their connections drain), removed ones
  // come back. Returns how many records it undid.
  std::size_t undo_runtime_backends();
  // Makes `next` (the serving configuration with other backends) the serving generation's:
  // rows staged and committed at once, as a reload does, then the overrides. Returns "" or why
  // not (no free row), having changed nothing then.
  std::string change_serving_backends(config next);
  void restart_workers(control_request_ptr request);
  void reload(control_request_ptr request);
  void upgrade(const std::string& binary, control_request_ptr request);
  // The new master serves: this one's workers hand over, then it leaves the files to it.
  void retire_after_upgrade(control_request_ptr request, const std::string& message);
  // The new master failed: it is killed, and the table rows and header it took are ours again.
  void recover_from_failed_upgrade(control_request_ptr request, const std::string& why);
  // On SIGCHLD while retiring: the upgraded master died before this one had left (its workers
  // still hand over or drain). Nobody else serves the listener then, so this master takes the
  // instance back: its rows, the control socket, its helpers and a new generation.
  void watch_upgraded_master();
  void take_back_after_upgrade(pid_t successor, int status);
  // Listens on the control socket (`inherited_fd`: the one a predecessor passed, or -1).
  void start_control(int inherited_fd);
  void begin_stop(bool graceful, control_request_ptr request);
  // SIGUSR1 or `wslb reopen-logs`: every live worker reopens its access log (log rotation).
  void reopen_logs(control_request_ptr request);
  // `rebalance [dry-run]` and `backend-evacuate ADDRESS MS|cancel` (shaping_commands.cpp).
  void register_shaping_commands();
  // Makes the plan now, prints it and (unless `dry_run`) starts it.
  void run_rebalance(bool dry_run, control_request_ptr request);
  // Every housekeeping tick: the `rebalance` requests held while a handover moved tunnels run
  // once it has settled, or are refused (the instance stops, or it never settled).
  void answer_waiting_rebalances(std::int64_t now_ms);
  void check_stop_progress();
  void finish_stop();

  void housekeeping();
  void on_signal(int signum);
  static clock_reading now();

  uv_loop_t loop_{};
  std::shared_ptr<const config> cfg_;  // as started: name and listen never change
  std::vector<std::string> run_args_;
  process_ops_factory make_ops_;
  std::unique_ptr<process_ops> ops_;
  int lock_fd_ = -1;
  int listen_fd_ = -1;
  std::string segment_;  // the table's name in /dev/shm, recorded in the runtime directory
  // Set by an upgrade to another layout (rebuild_table): the predecessor's table, removed once
  // it is gone, and a pidfd for it.
  std::string predecessor_segment_;
  int predecessor_fd_ = -1;
  uv_poll_t predecessor_poll_{};
  // Old master during `upgrade`: the name a successor of another layout gives its table.
  std::string successor_segment_;
  int admin_fd_ = -1;  // handed to operations_ at start
  std::optional<shm::table_mapping> table_;
  std::optional<child_table> children_;
  control_server control_;
  command_table commands_;
  operations operations_;
  override_journal journal_;
  rebalancer rebalancer_;
  struct waiting_rebalance {
    control_request_ptr request;
    bool dry_run = false;
    std::int64_t give_up_ms = 0;  // unix ms
  };
  std::vector<waiting_rebalance> waiting_rebalances_;
  std::optional<inherited_fds> inherited_;  // set when an upgrade started this master
  std::string executable_;                  // the binary `upgrade` re-executes by default
  binary_upgrade upgrade_;
  bool retiring_ = false;  // an upgraded master serves: hand over, leave the files to it
  bool stopping_ = false;
  bool stopped_ = false;
  bool helpers_asked_to_stop_ = false;
  std::vector<control_request_ptr> stop_requests_;
  std::array<uv_signal_t, 7> signals_{};
  uv_timer_t housekeeping_timer_{};
  int exit_code_ = exit_code::ok;
};

}  // namespace wslb::supervisor
