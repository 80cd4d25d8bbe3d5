#include "supervisor/generation.h"

#include <signal.h>

#include <algorithm>

#include "common/build_info.h"
#include "common/child_channel.h"
#include "common/log.h"
#include "shm/table_ops.h"

namespace wslb::supervisor {

namespace {

constexpr const char* who = "master";
constexpr auto relaxed = std::memory_order_relaxed;

shm::worker_state shown_state(slot_phase phase) {
  switch (phase) {
    case slot_phase::starting: return shm::worker_state::starting;
    case slot_phase::running: return shm::worker_state::running;
    case slot_phase::draining: return shm::worker_state::draining;
    case slot_phase::backoff: return shm::worker_state::backoff;
    case slot_phase::failed: return shm::worker_state::failed;
    case slot_phase::discarded:
    case slot_phase::released: return shm::worker_state::empty;
  }
  return shm::worker_state::empty;
}

}  // namespace

const char* to_string(generation_state s) {
  switch (s) {
    case generation_state::pending: return "pending";
    case generation_state::serving: return "serving";
    case generation_state::draining: return "draining";
    case generation_state::gone: return "gone";
  }
  return "?";
}

generation::generation(std::uint32_t number, std::shared_ptr<const config> cfg,
                       generation_state state)
    : number_(number), cfg_(std::move(cfg)), state_(state) {}

void generation::publish(generation_context& ctx, slot& s, slot_phase phase, clock_reading now,
                         std::int64_t shown_until_unix_ms) {
  s.phase = phase;
  shm::worker_row& row = ctx.table.workers[s.row];
  row.pid.store(s.pid, relaxed);
  row.generation.store(number_, relaxed);
  switch (phase) {
    case slot_phase::starting:
      shm::copy_fixed(row.build_id, shm::build_id_chars, binary_build_id());
      row.started_ms.store(now.unix_ms, relaxed);
      row.backoff_until_ms.store(0, relaxed);
      break;
    case slot_phase::backoff:
      row.backoff_until_ms.store(shown_until_unix_ms, relaxed);
      break;
    case slot_phase::draining:
      if (shown_until_unix_ms != 0) row.drain_deadline_ms.store(shown_until_unix_ms, relaxed);
      break;
    default:
      break;
  }
  // Last, so that a reader who sees the state sees the fields that go with it.
  row.state.store(shown_state(phase), std::memory_order_release);
}

void generation::spawn(generation_context& ctx, slot& s, clock_reading now) {
  shm::table& t = ctx.table;
  if (s.row + 1 > t.header.slot_high_water.load()) {
    t.header.slot_high_water = static_cast<std::uint32_t>(s.row + 1);
  }
  child_spec spec{s.row, "worker " + std::to_string(s.row), ctx.listen_fd,
                  ctx.worker_body(cfg_, s.row, number_)};
  const pid_t pid = ctx.ops.spawn(spec);
  s.pid = pid > 0 ? pid : 0;
  s.started_ms = now.monotonic_ms;
  s.kill_at_ms = 0;
  if (pid > 0) {
    publish(ctx, s, slot_phase::starting, now);
    return;
  }
  // A fork that failed is a failed start: the slot waits and tries again.
  const respawn_decision d = s.policy.on_unexpected_exit(-1, 0);
  const std::uint32_t delay = std::max<std::uint32_t>(d.delay_ms, respawn_policy::first_delay_ms);
  s.backoff_until_ms = now.monotonic_ms + delay;
  publish(ctx, s, slot_phase::backoff, now, now.unix_ms + delay);
}

bool generation::start(generation_context& ctx, const std::vector<std::size_t>& rows,
                       clock_reading now) {
  for (std::size_t row : rows) {
    slot s;
    s.row = row;
    slots_.push_back(s);
    spawn(ctx, slots_.back(), now);
    if (slots_.back().pid == 0) return false;
  }
  return true;
}

bool generation::on_ready(generation_context& ctx, std::size_t row) {
  for (auto& s : slots_) {
    if (s.row != row || s.phase == slot_phase::released) continue;
    // A worker told to drain before it got ready stays draining.
    if (s.phase == slot_phase::starting) publish(ctx, s, slot_phase::running, {});
    return true;
  }
  return false;
}

generation::slot* generation::slot_of_pid(pid_t pid) {
  for (auto& s : slots_) {
    if (s.pid == pid && pid != 0) return &s;
  }
  return nullptr;
}

exit_outcome generation::on_exit(generation_context& ctx, const exited_child& exited,
                                 clock_reading now, std::string& why) {
  slot* s = slot_of_pid(exited.pid);
  if (s == nullptr) return exit_outcome::not_ours;
  ctx.ops.close_channel(s->row);
  const std::int64_t lived = now.monotonic_ms - s->started_ms;
  const std::string worker = "worker " + std::to_string(s->row) + " (generation " +
                             std::to_string(number_) + ", pid " + std::to_string(s->pid) + ")";
  const std::string how = describe_exit(exited.status);
  s->pid = 0;
  s->kill_at_ms = 0;
  shm::clear_worker_row(ctx.table, s->row);  // its live counts die with it; totals are kept

  if (s->phase == slot_phase::draining || s->phase == slot_phase::discarded) {
    why = s->phase == slot_phase::draining ? worker + " exited as asked (" + how + ")" : "";
    publish(ctx, *s, slot_phase::released, now);
    return exit_outcome::expected;
  }
  if (state_ == generation_state::pending) {
    why = worker + " exited at start (" + how + ")";
    publish(ctx, *s, slot_phase::released, now);
    return exit_outcome::failed_start;
  }
  ctx.table.workers[s->row].restarts.fetch_add(1, relaxed);
  const int code = WIFEXITED(exited.status) ? WEXITSTATUS(exited.status) : -1;
  const respawn_decision d = s->policy.on_unexpected_exit(code, lived);
  switch (d.action) {
    case respawn_action::give_up:
      why = worker + " exited after " + std::to_string(lived) + " ms (" + how +
            "); not restarting it: fix the configuration and reload";
      publish(ctx, *s, slot_phase::failed, now);
      return exit_outcome::failed;
    case respawn_action::respawn_now:
      why = worker + " exited unexpectedly (" + how + ") after " + std::to_string(lived) +
            " ms; restarting now";
      spawn(ctx, *s, now);
      return exit_outcome::respawned;
    case respawn_action::respawn_later:
      why = worker + " exited (" + how + ") " + std::to_string(lived) + " ms after start, " +
            std::to_string(s->policy.failed_starts()) +
            " failed starts in a row; next attempt in " + std::to_string(d.delay_ms) + " ms";
      s->backoff_until_ms = now.monotonic_ms + d.delay_ms;
      publish(ctx, *s, slot_phase::backoff, now, now.unix_ms + d.delay_ms);
      return exit_outcome::backing_off;
  }
  return exit_outcome::expected;
}

void generation::tick(generation_context& ctx, clock_reading now) {
  for (auto& s : slots_) {
    if (s.phase == slot_phase::backoff && state_ == generation_state::serving &&
        now.monotonic_ms >= s.backoff_until_ms) {
      spawn(ctx, s, now);
    }
    if (s.pid != 0 && s.kill_at_ms != 0 && now.monotonic_ms >= s.kill_at_ms) {
      log_line(who, "worker %zu (generation %u, pid %d) did not exit in time; killing it",
               s.row, number_, s.pid);
      ctx.ops.kill(s.pid, SIGKILL);
      s.kill_at_ms = 0;
    }
  }
}

void generation::serve() { state_ = generation_state::serving; }

void generation::ask_to_exit(generation_context& ctx, slot& s, char message,
                             std::int64_t kill_at_ms) {
  ctx.ops.send(s.row, message);
  if (s.kill_at_ms == 0 || kill_at_ms < s.kill_at_ms) s.kill_at_ms = kill_at_ms;
}

void generation::drain(generation_context& ctx, clock_reading now, bool hand_over) {
  if (state_ != generation_state::gone) state_ = generation_state::draining;
  const std::int64_t drain_ms = cfg_->drain_timeout_ms;
  for (auto& s : slots_) {
    if (s.pid == 0) {
      // Waiting in backoff, or failed: nothing to drain, the row goes back to the pool.
      if (s.phase != slot_phase::released) publish(ctx, s, slot_phase::released, now);
      continue;
    }
    if (s.phase != slot_phase::starting && s.phase != slot_phase::running) continue;
    ask_to_exit(ctx, s, hand_over ? child_channel::msg_handover : child_channel::msg_drain,
                now.monotonic_ms + drain_ms + drain_kill_grace_ms);
    publish(ctx, s, slot_phase::draining, now, now.unix_ms + drain_ms);
  }
}

std::size_t generation::tell_workers(generation_context& ctx, char message) {
  std::size_t told = 0;
  for (auto& s : slots_) {
    if (s.pid == 0 || (s.phase != slot_phase::starting && s.phase != slot_phase::running &&
                       s.phase != slot_phase::draining)) {
      continue;
    }
    ctx.ops.send(s.row, message);
    ++told;
  }
  return told;
}

void generation::stop(generation_context& ctx, clock_reading now) {
  if (state_ != generation_state::gone) state_ = generation_state::draining;
  for (auto& s : slots_) {
    if (s.pid == 0) {
      if (s.phase != slot_phase::released) publish(ctx, s, slot_phase::released, now);
      continue;
    }
    ask_to_exit(ctx, s, child_channel::msg_stop, now.monotonic_ms + stop_kill_grace_ms);
    if (s.phase == slot_phase::starting || s.phase == slot_phase::running) {
      publish(ctx, s, slot_phase::draining, now);
    }
  }
}

void generation::roll_back(generation_context& ctx, clock_reading now) {
  state_ = generation_state::gone;
  for (auto& s : slots_) {
    if (s.pid == 0) {
      if (s.phase != slot_phase::released) publish(ctx, s, slot_phase::released, now);
      continue;
    }
    if (s.phase == slot_phase::running) {
      // It may hold connections it accepted already: they are closed cleanly.
      ask_to_exit(ctx, s, child_channel::msg_stop, now.monotonic_ms + stop_kill_grace_ms);
    } else {
      ctx.ops.kill(s.pid, SIGKILL);  // never got ready: nothing of it to keep
    }
    publish(ctx, s, slot_phase::discarded, now);
  }
}

bool generation::all_ready() const {
  return !slots_.empty() && std::all_of(slots_.begin(), slots_.end(), [](const slot& s) {
    return s.phase == slot_phase::running;
  });
}

bool generation::holds_row(std::size_t row) const {
  return std::any_of(slots_.begin(), slots_.end(), [row](const slot& s) {
    return s.row == row && s.phase != slot_phase::released;
  });
}

bool generation::finished() const {
  return std::all_of(slots_.begin(), slots_.end(),
                     [](const slot& s) { return s.phase == slot_phase::released; });
}

std::size_t generation::live_workers() const {
  return static_cast<std::size_t>(
      std::count_if(slots_.begin(), slots_.end(), [](const slot& s) { return s.pid != 0; }));
}

std::uint64_t generation::connections(const shm::table& t) const {
  std::uint64_t n = 0;
  for (const auto& s : slots_) {
    if (s.pid != 0) n += t.workers[s.row].connections.load(relaxed);
  }
  return n;
}

}  // namespace wslb::supervisor
