#include <signal.h>
#include <unistd.h>

#include <array>
#include <utility>

#include "common/child_channel.h"
#include "common/log.h"
#include "common/run_options.h"
#include "supervisor/backend_rows.h"
#include "supervisor/instance_files.h"
#include "supervisor/master_state.h"

namespace wslb::supervisor {

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
        send(slots_[s], child_channel::msg_stop);
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
  std::string error;
  shm::table& t = table_->get();
  if (!apply_backends(t, next, error)) return fail(error);
  const std::string summary = backend_changes(*cfg_, next);
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
      send(slots_[i], child_channel::msg_stop);
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
      send(checker_, child_channel::msg_stop);
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
    // The lock file stays: removing it would let the next two masters lock two inodes.
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

}  // namespace wslb::supervisor
