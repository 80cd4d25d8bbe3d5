// A supervised child that is not a worker: the health checker, and any later helper process
// (one per instance, no slot, no generation). Forked from a spec made fresh at every start,
// respawned with the respawn policy's backoff when it dies unasked, never after exit code 78,
// stopped with msg_stop and SIGTERM. Adding another helper is one more helper_child. Master only.
#pragma once

#include <functional>
#include <string>

#include "supervisor/child_ops.h"
#include "supervisor/respawn_policy.h"

namespace wslb::supervisor {

class helper_child {
 public:
  // `make_spec` builds the spec of each start (its body sees the configuration of that moment);
  // `on_pid` hears every pid change (0 when it exited) and whether it was a respawn, so the
  // owner can show it in the table.
  helper_child(std::function<child_spec()> make_spec,
               std::function<void(pid_t pid, bool respawn)> on_pid);

  void start(child_ops& ops, clock_reading now);
  // True when `exited` was this child; then respawns it (at once or after a delay) unless it
  // was asked to stop or exited with the fatal-configuration code.
  bool on_exit(child_ops& ops, const exited_child& exited, clock_reading now);
  // Starts it again once a respawn delay is over.
  void tick(child_ops& ops, clock_reading now);
  // Asks it to exit (msg_stop, then SIGTERM) and never respawns it.
  void stop(child_ops& ops);
  // Undoes stop(): starts it again now, or (still exiting) once it has exited.
  void resume(child_ops& ops, clock_reading now);

  pid_t pid() const { return pid_; }

 private:
  std::function<child_spec()> make_spec_;
  std::function<void(pid_t, bool)> on_pid_;
  std::string what_;
  child_id id_ = checker_id;
  pid_t pid_ = 0;
  std::int64_t started_ms_ = 0;
  std::int64_t respawn_at_ms_ = 0;  // monotonic; 0 = none due
  bool stopping_ = false;
  respawn_policy policy_;
};

}  // namespace wslb::supervisor
