// The master's own state and the functions that act on it, shared by the files that implement
// it: master.cpp (start-up, signals, commands, housekeeping), child_table.cpp (forking,
// watching and reaping children, respawns) and generations.cpp (restart, reload, stop).
// Internal to supervisor/: nothing outside includes it.
#pragma once

#include <uv.h>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/exit_codes.h"
#include "shm/table.h"
#include "supervisor/control_server.h"
#include "supervisor/respawn_policy.h"

namespace wslb::supervisor {

inline constexpr auto relaxed = std::memory_order_relaxed;
inline constexpr const char* who = "master";
// How long new workers may take to report ready before a restart is abandoned.
inline constexpr std::int64_t ready_timeout_ms = 10'000;
// Beyond its drain deadline a worker gets this long (its close window included) before the
// master kills it.
inline constexpr std::int64_t drain_kill_grace_ms = 5'000;
inline constexpr std::int64_t stop_kill_grace_ms = 3'000;

class master;

// Watches one child's end of the channel. Heap-allocated per spawn: a closing uv handle must
// outlive its close callback, and a slot may be respawned before that callback has run.
struct channel_watch {
  uv_poll_t poll;
  master* owner;
  std::size_t slot;  // shm::max_worker_slots for the checker
};

// One child process as the master sees it: a worker slot (same index as its table row) or the
// checker.
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
  // Forks `c` (the worker in `slot`, or the checker at slot max_worker_slots) with a new
  // channel: the child runs `body(its end)` and keeps `extra_fd` (the listener, or -1) too.
  // Fills c's pid, channel and start and watches the channel. Returns the pid, or -1 after
  // logging why (`what` names the child in that line).
  pid_t spawn_child(child& c, std::size_t slot, const std::string& what, int extra_fd,
                    const std::function<int(int)>& body);
  void spawn_worker(std::size_t slot, std::uint32_t generation);
  void spawn_checker();
  std::optional<std::size_t> free_slot() const;
  void reap_children();
  void on_worker_exit(std::size_t slot, int status);
  void on_checker_exit(int status);
  void watch_channel(child& c, std::size_t slot);
 public:
  void on_channel_readable(std::size_t slot);  // called from a channel_watch's callback

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
  // Fills commands_: one handler per control verb.
  void register_commands();
  void on_command(const std::string& command, control_request_ptr request);
  void on_signal(int signum);
  std::size_t live_workers() const;

  uv_loop_t loop_{};
  std::shared_ptr<const config> cfg_;
  std::vector<std::string> run_args_;
  int lock_fd_ = -1;
  std::string lock_path_;  // where lock_fd_ lives (never removed)
  int listen_fd_ = -1;
  std::optional<shm::table_mapping> table_;
  control_server control_;
  command_table commands_;
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

// "exit code 3" or "killed by signal Killed", for log lines.
std::string describe_exit(int status);

}  // namespace wslb::supervisor
