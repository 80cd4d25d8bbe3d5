#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string_view>

#include "common/child_channel.h"
#include "common/handover_format.h"
#include "common/log.h"
#include "common/run_options.h"
#include "shm/table_export.h"
#include "shm/table_ops.h"
#include "supervisor/backend_rows.h"
#include "supervisor/instance_files.h"
#include "supervisor/master_state.h"
#include "supervisor/reload_steps.h"

namespace wslb::supervisor {

namespace {

// Answers `request` (null for a signal) with what the child table replies.
child_table::reply answer(control_request_ptr request, std::string prefix_on_error = "") {
  return [request, prefix_on_error](bool ok, const std::string& message) {
    if (request) request->finish(ok, ok ? message : prefix_on_error + message);
  };
}

// What the upgrade's answer adds when the successor's workers speak another handover format
// (named in its report, "handover format N"): this master's workers drain instead.
std::string handover_note(const std::string& report) {
  constexpr std::string_view named = "handover format ";
  const std::size_t at = report.find(named);
  if (at == std::string::npos) return {};
  const unsigned long theirs = std::strtoul(report.c_str() + at + named.size(), nullptr, 10);
  if (theirs == handover::format_version) return {};
  return "; its workers speak handover format " + std::to_string(theirs) + ", these " +
         std::to_string(handover::format_version) +
         ": this master's workers drain their connections instead of handing them over";
}

}  // namespace

void master::register_commands() {
  const auto no_arguments = [](const std::string& verb, auto action) {
    return [verb, action](const std::string& arguments, control_request_ptr request) {
      if (!arguments.empty()) return request->finish(false, verb + " takes no arguments");
      action(std::move(request));
    };
  };
  commands_.add("restart-workers", no_arguments("restart-workers", [this](control_request_ptr r) {
    restart_workers(std::move(r));
  }));
  commands_.add("reopen-logs", no_arguments("reopen-logs", [this](control_request_ptr r) {
    reopen_logs(std::move(r));
  }));
  commands_.add("reload", no_arguments("reload", [this](control_request_ptr r) {
    reload(std::move(r));
  }));
  commands_.add("backend", [this](const std::string& arguments, control_request_ptr request) {
    backend_command(arguments, std::move(request));
  });
  register_shaping_commands();
  commands_.add("upgrade", [this](const std::string& arguments, control_request_ptr request) {
    upgrade(arguments, std::move(request));
  });
  commands_.add("stop", [this](const std::string& arguments, control_request_ptr request) {
    if (arguments != "" && arguments != "graceful") {
      return request->finish(false, "stop takes no argument but 'graceful'");
    }
    begin_stop(arguments == "graceful", std::move(request));
  });
}

void master::restart_workers(control_request_ptr request) {
  children_->report(transaction_event::started, children_->next_generation(), "restart");
  if (stopping_) {
    const std::string why = "the instance is stopping";
    children_->report(transaction_event::rolled_back, children_->next_generation(), why);
    return answer(request)(false, why);
  }
  // Same configuration, nothing to prepare: the transaction has no steps.
  children_->begin_restart(children_->serving().cfg(), reload_transaction{}, "",
                           answer(request), now());
}

void master::reopen_logs(control_request_ptr request) {
  // The workers write the access log; the master only passes the word on, over the channel
  // (a signal could reach a freshly forked worker before it blocks SIGUSR1, and kill it).
  const std::size_t told = children_->tell_workers(child_channel::msg_reopen_logs);
  const std::string line = std::to_string(told) + " workers reopen the access log";
  log_line(who, "%s: %s", request ? "reopen-logs" : "SIGUSR1", line.c_str());
  answer(request)(true, line);
}

void master::reload(control_request_ptr request) {
  const std::string refused = "reload refused, configuration unchanged: ";
  children_->report(transaction_event::started, children_->next_generation(), "reload");
  const auto fail = [&](const std::string& why) {
    log_line(who, "%s%s", refused.c_str(), why.c_str());
    children_->report(transaction_event::rolled_back, children_->next_generation(), refused + why);
    answer(request)(false, refused + why);
  };
  if (stopping_) return fail("the instance is stopping");
  if (children_->restart_pending()) return fail("a restart is in progress");
  config next;
  const run_parse_result parsed = parse_run_args(run_args_, next);
  if (!parsed.ok) return fail(parsed.message);
  if (next.name != cfg_->name) return fail("--name cannot change on reload");
  if (next.listen.to_string() != cfg_->listen.to_string()) {
    return fail("--listen cannot change on reload (the listener stays open for the instance's "
                "life); stop and run again to move it");
  }
  if (!(next.cluster == cfg_->cluster)) {
    return fail("--cluster, --node-id and --cluster-interval cannot change on reload (the "
                "cluster agent keeps them for the instance's life); stop and run again");
  }
  std::vector<std::string> runtime_dropped;
  reload_transaction tx = reload_steps(table_->get(), journal_, &runtime_dropped);
  if (const std::string why = tx.prepare(next); !why.empty()) return fail(why);
  const std::string changes = backend_changes(*children_->serving().cfg(), next);
  std::string summary =
      "configuration reloaded" + (changes.empty() ? std::string() : " (backends:" + changes + ")");
  // An edited configuration line wins over the operator's runtime change: say which lost.
  for (const std::string& dropped : runtime_dropped) {
    summary += "; runtime change dropped: " + dropped;
  }
  for (const std::string& dropped : dropped_overrides(journal_.overrides(), next)) {
    summary += "; runtime override dropped: " + dropped;
  }
  children_->begin_restart(std::make_shared<const config>(std::move(next)), std::move(tx),
                           summary, answer(request, refused), now());
}

void master::upgrade(const std::string& binary_argument, control_request_ptr request) {
  const std::string binary = binary_argument.empty() ? executable_ : binary_argument;
  const auto refuse = [&](const std::string& why) {
    log_line(who, "upgrade refused: %s", why.c_str());
    answer(request)(false, "upgrade refused: " + why);
  };
  if (stopping_) return refuse("the instance is stopping");
  if (children_->restart_pending()) return refuse("a restart is in progress");
  if (binary.empty() || binary.front() != '/') return refuse("'" + binary + "' is not an absolute path");
  if (upgrade_.in_progress()) return refuse("an upgrade is already in progress");
  // A successor of another layout rebuilds its own table from this export, under a name
  // chosen here: so that this master can remove it if the successor fails.
  successor_segment_ = shm::new_segment_name(cfg_->name);
  std::string error;
  const int state = sealed_state(
      shm::export_table(table_->get(), shm::export_names{segment_, successor_segment_}), error);
  if (state < 0) return refuse(error);
  inherited_fds fds;
  fds.listen = listen_fd_;
  fds.lock = lock_fd_;
  fds.control = control_.fd();
  fds.table = table_->descriptor();
  fds.admin = operations_.admin_fd();
  fds.state = state;
  const std::string why = upgrade_.start(
      &loop_, binary, run_args_, fds, operations_.successor_environment(),
      [this, request](bool ok, const std::string& message) {
        if (ok) {
          retire_after_upgrade(request, message);
        } else {
          recover_from_failed_upgrade(request, message);
        }
      });
  close(state);  // the successor has its own copy
  if (!why.empty()) refuse(why);
}

void master::retire_after_upgrade(control_request_ptr request, const std::string& message) {
  const std::string note = handover_note(message);
  log_line(who, "upgrade: %s%s; this master's workers %s, then it exits", message.c_str(),
           note.c_str(), note.empty() ? "hand over" : "drain");
  retiring_ = true;
  stopping_ = true;  // no more commands or restarts here: the new master has them
  control_.stop(/*remove_file=*/false);
  // systemd follows the successor from now on (it would kill the service when this pid exits).
  operations_.hand_main_pid_to(upgrade_.new_master());
  operations_.stop_admin_listening();
  // A successor of another layout serves from its own table: its workers are shown in this one
  // too, where this master's workers look for whom to hand over to. (With one table their rows
  // are there already.)
  shm::table& t = table_->get();
  for (const successor_worker& w : upgrade_.successor_workers()) {
    if (w.row >= shm::max_worker_slots) continue;
    shm::worker_row& row = t.workers[w.row];
    if (row.state.load() != shm::worker_state::empty) continue;
    row.pid = w.pid;
    row.generation = w.generation;
    row.state.store(shm::worker_state::running, std::memory_order_release);
    if (w.row + 1 > t.header.slot_high_water.load()) {
      t.header.slot_high_water = static_cast<std::uint32_t>(w.row + 1);
    }
  }
  children_->hand_over_all(now());
  children_->stop_helpers();
  helpers_asked_to_stop_ = true;
  answer(request)(true, "upgraded: " + message + note);
  check_stop_progress();
}

void master::recover_from_failed_upgrade(control_request_ptr request, const std::string& why) {
  // The new master may have taken rows, the header and the checker row before it failed.
  shm::table& t = table_->get();
  for (std::size_t row = 0; row < shm::max_worker_slots; ++row) {
    shm::worker_row& w = t.workers[row];
    if (children_->holds_row(row) || w.state.load() == shm::worker_state::empty) continue;
    shm::clear_worker_row(t, row);
    w.pid = 0;
    w.state = shm::worker_state::empty;
  }
  write_binary_identity();
  t.header.current_generation = children_->serving().number();
  t.header.workers_per_generation = children_->serving().cfg()->workers;
  // A successor of another layout may have created its table and named it in the record.
  shm::table_mapping::remove(successor_segment_);
  if (recorded_table(cfg_->name) != segment_) record_table(cfg_->name, segment_);
  const std::string message = "upgrade failed, master pid " + std::to_string(getpid()) +
                              " keeps serving: " + why;
  log_line(who, "%s", message.c_str());
  answer(request)(false, message);
}

void master::begin_stop(bool graceful, control_request_ptr request) {
  if (request) stop_requests_.push_back(request);
  if (retiring_) {
    // The listener and the table serve the new master: only this one's workers are hurried.
    children_->stop(graceful, now());
    return check_stop_progress();
  }
  // A graceful stop may be hurried by a fast one, not the other way round.
  if (stopping_ && graceful) return check_stop_progress();
  if (!stopping_) {
    log_line(who, "%s stop: listener closed, %s", graceful ? "graceful" : "fast",
             graceful ? "draining workers" : "closing all connections");
    operations_.stopping(graceful ? "graceful stop: draining" : "stopping");
  }
  stopping_ = true;
  shm::table& t = table_->get();
  t.header.stopping = 1;
  // Closing the listener first: a graceful stop takes no new clients while it drains.
  if (listen_fd_ >= 0) {
    close(listen_fd_);
    listen_fd_ = -1;
    t.header.listening = 0;
  }
  children_->stop(graceful, now());
  check_stop_progress();
}

void master::check_stop_progress() {
  if (children_->live_workers() > 0) return;  // their kill deadlines run in the child table
  if (children_->live_helpers() > 0) {
    if (!helpers_asked_to_stop_) children_->stop_helpers();
    helpers_asked_to_stop_ = true;
    return;
  }
  finish_stop();
}

void master::finish_stop() {
  if (stopped_) return;
  stopped_ = true;
  uv_timer_stop(&housekeeping_timer_);
  // After an upgrade the table and the control socket are the new master's.
  if (!retiring_) {
    shm::table_mapping::remove(segment_);
    forget_table(cfg_->name);
  }
  control_.stop(!retiring_);
  operations_.stop();
  stop_watching_predecessor();
  if (listen_fd_ >= 0) {
    close(listen_fd_);
    listen_fd_ = -1;
  }
  if (lock_fd_ >= 0) {
    // The lock file stays: removing it would let the next two masters lock two inodes.
    close(lock_fd_);
    lock_fd_ = -1;
  }
  log_line(who, retiring_ ? "handed over to the upgraded master: exiting" : "stopped");
  for (auto& r : stop_requests_) r->finish(true, "stopped");
  stop_requests_.clear();
  for (auto& s : signals_) uv_close(reinterpret_cast<uv_handle_t*>(&s), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&housekeeping_timer_), nullptr);
  ops_->close_all_channels();
}

void master::watch_upgraded_master() {
  const pid_t successor = upgrade_.new_master();
  int status = 0;
  if (successor <= 0 || waitpid(successor, &status, WNOHANG) != successor) return;
  take_back_after_upgrade(successor, status);
}

void master::take_back_after_upgrade(pid_t successor, int status) {
  retiring_ = false;
  stopping_ = false;
  helpers_asked_to_stop_ = false;
  // Its workers went with it (PDEATHSIG), and the tunnels handed to them: the rows and header
  // fields it took are given back as after an upgrade that failed before it was ready.
  recover_from_failed_upgrade(nullptr, "the new master (pid " + std::to_string(successor) +
                                           ") " + describe_exit(status) +
                                           " after it took over; this master serves the "
                                           "instance again");
  try {
    start_control(-1);
  } catch (const std::exception& e) {
    log_line(who, "%s; `wslb` commands cannot reach this master", e.what());
  }
  children_->resume_helpers(now());
  operations_.resume_admin_listening();
  operations_.hand_main_pid_to(getpid());  // systemd was told the successor's
  // This master's workers were told to hand over and drain: a new generation takes the
  // listener (open here all along: connections wait in its queue meanwhile).
  restart_workers(nullptr);
}

}  // namespace wslb::supervisor
