#include "supervisor/helper_child.h"

#include <signal.h>

#include "common/child_channel.h"
#include "common/log.h"

namespace wslb::supervisor {

helper_child::helper_child(std::function<child_spec()> make_spec,
                           std::function<void(pid_t, bool)> on_pid)
    : make_spec_(std::move(make_spec)), on_pid_(std::move(on_pid)) {}

void helper_child::start(child_ops& ops, clock_reading now) {
  if (stopping_) return;
  const child_spec spec = make_spec_();
  what_ = spec.what;
  id_ = spec.id;
  const bool respawn = started_ms_ != 0;
  respawn_at_ms_ = 0;
  started_ms_ = now.monotonic_ms;
  const pid_t pid = ops.spawn(spec);
  if (pid <= 0) {
    respawn_at_ms_ = now.monotonic_ms + respawn_policy::max_delay_ms;
    return;
  }
  pid_ = pid;
  on_pid_(pid_, respawn);
}

bool helper_child::on_exit(child_ops& ops, const exited_child& exited, clock_reading now) {
  if (pid_ == 0 || exited.pid != pid_) return false;
  ops.close_channel(id_);
  pid_ = 0;
  on_pid_(0, false);
  if (stopping_) return true;
  const int code = WIFEXITED(exited.status) ? WEXITSTATUS(exited.status) : -1;
  const respawn_decision d = policy_.on_unexpected_exit(code, now.monotonic_ms - started_ms_);
  if (d.action == respawn_action::give_up) {
    log_line("master", "%s exited (%s); not restarting it", what_.c_str(),
             describe_exit(exited.status).c_str());
    return true;
  }
  log_line("master", "%s exited unexpectedly (%s); restarting it in %u ms", what_.c_str(),
           describe_exit(exited.status).c_str(), d.delay_ms);
  respawn_at_ms_ = now.monotonic_ms + d.delay_ms;
  if (d.delay_ms == 0) start(ops, now);
  return true;
}

void helper_child::tick(child_ops& ops, clock_reading now) {
  if (pid_ == 0 && respawn_at_ms_ != 0 && now.monotonic_ms >= respawn_at_ms_) start(ops, now);
}

void helper_child::resume(child_ops& ops, clock_reading now) {
  if (!stopping_) return;
  stopping_ = false;
  // One still exiting is respawned by on_exit, as any child that exits unasked.
  if (pid_ == 0) start(ops, now);
}

void helper_child::stop(child_ops& ops) {
  stopping_ = true;
  respawn_at_ms_ = 0;
  if (pid_ == 0) return;
  ops.send(id_, child_channel::msg_stop);
  ops.kill(pid_, SIGTERM);
}

}  // namespace wslb::supervisor
