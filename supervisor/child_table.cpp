#include "supervisor/child_table.h"

#include <algorithm>
#include <cstdio>

#include "common/child_channel.h"
#include "common/log.h"

namespace wslb::supervisor {

namespace {
constexpr const char* who = "master";
}  // namespace

helper_child& child_table::add_helper(helper_child h, clock_reading now) {
  helpers_.push_back(std::move(h));
  helpers_.back().start(ctx_.ops, now);
  return helpers_.back();
}

void child_table::start_first(std::shared_ptr<const config> cfg, clock_reading now,
                              std::uint32_t number) {
  const unsigned workers = cfg->workers;
  generations_.push_back(
      std::make_unique<generation>(number, std::move(cfg), generation_state::serving));
  serving_ = generations_.back().get();
  serving_->start(ctx_, free_rows(workers), now);  // a failed fork backs off and retries
  ctx_.table.header.current_generation = number;
  ctx_.table.header.workers_per_generation = workers;
}

void child_table::report(transaction_event e, std::uint32_t number, const std::string& text) {
  if (observer_) observer_(e, number, text);
}

void child_table::begin_restart(std::shared_ptr<const config> next, reload_transaction tx,
                                std::string summary, reply done, clock_reading now) {
  if (pending_) {
    tx.roll_back();
    const std::string why = "a restart is already in progress (generation " +
                            std::to_string(pending_->next->number()) + " starting)";
    report(transaction_event::rolled_back, pending_->next->number(), why);
    return done(false, why);
  }
  const unsigned workers = next->workers;
  const std::uint32_t number = serving_->number() + 1;
  const std::vector<std::size_t> rows = free_rows(workers);
  if (rows.size() < workers) {
    tx.roll_back();
    const std::string why = "no free worker slot: too many generations still draining";
    report(transaction_event::rolled_back, number, why);
    return done(false, why);
  }
  generations_.push_back(std::make_unique<generation>(number, std::move(next),
                                                      generation_state::pending));
  generation* g = generations_.back().get();
  pending_ = pending_restart{g, std::move(tx), std::move(summary), std::move(done),
                             now.monotonic_ms + ready_timeout_ms};
  log_line(who, "starting generation %u (%u workers)", number, workers);
  if (!g->start(ctx_, rows, now)) {
    return roll_back("generation " + std::to_string(number) +
                         " cannot start: a worker could not be forked",
                     now);
  }
}

void child_table::commit(clock_reading now) {
  pending_restart p = std::move(*pending_);
  pending_.reset();
  generation* previous = serving_;
  p.tx.commit(*p.next->cfg());
  // The new generation accepts: only now do the old ones stop accepting, so the listener
  // always has someone to serve it.
  const std::size_t draining_workers = previous->live_workers();
  const std::uint64_t draining_connections = previous->connections(ctx_.table);
  // The new workers are marked running in the table already: the old ones find them there.
  const bool hand_over = p.next->cfg()->handover;
  previous->drain(ctx_, now, hand_over);
  p.next->serve();
  serving_ = p.next;
  ctx_.table.header.workers_per_generation = serving_->cfg()->workers;
  ctx_.table.header.current_generation = serving_->number();
  char drain_seconds[32];
  std::snprintf(drain_seconds, sizeof drain_seconds, "%.3g",
                previous->cfg()->drain_timeout_ms / 1000.0);
  std::string message = "generation " + std::to_string(serving_->number()) + " running " +
                        std::to_string(serving_->cfg()->workers) + " workers; generation " +
                        std::to_string(previous->number()) +
                        (hand_over ? " handing over then draining " : " draining ") +
                        std::to_string(draining_workers) + " workers with " +
                        std::to_string(draining_connections) + " connections (drain timeout " +
                        drain_seconds + " s)";
  if (!p.summary.empty()) message = p.summary + "; " + message;
  log_line(who, "%s", message.c_str());
  report(transaction_event::committed, serving_->number(), message);
  forget_finished();
  p.done(true, message);
}

void child_table::roll_back(const std::string& why, clock_reading now, bool old_serves_on) {
  pending_restart p = std::move(*pending_);
  pending_.reset();
  p.next->roll_back(ctx_, now);
  p.tx.roll_back();
  const std::string message =
      old_serves_on ? why + "; generation " + std::to_string(serving_->number()) + " keeps serving"
                    : why;
  log_line(who, "%s", message.c_str());
  report(transaction_event::rolled_back, p.next->number(), message);
  forget_finished();
  p.done(false, message);
}

void child_table::on_child_message(child_id id, char message, clock_reading now) {
  if (message != child_channel::msg_ready || id >= first_helper_id) return;
  generation* g = owner_of_row(id);
  if (g == nullptr || !g->on_ready(ctx_, id)) return;
  if (pending_ && g == pending_->next && g->all_ready()) commit(now);
}

void child_table::reap_children(clock_reading now) {
  while (const std::optional<exited_child> exited = ctx_.ops.reap()) {
    bool known = false;
    for (auto& h : helpers_) known = known || h.on_exit(ctx_.ops, *exited, now);
    for (std::size_t i = 0; i < generations_.size() && !known; ++i) {
      generation& g = *generations_[i];
      std::string why;
      const exit_outcome outcome = g.on_exit(ctx_, *exited, now, why);
      if (outcome == exit_outcome::not_ours) continue;
      known = true;
      if (outcome == exit_outcome::failed_start && pending_ && &g == pending_->next) {
        roll_back("generation " + std::to_string(g.number()) + " cannot start: " + why, now);
      } else if (!why.empty()) {
        log_line(who, "%s", why.c_str());
      }
    }
  }
  forget_finished();
}

void child_table::tick(clock_reading now) {
  if (pending_ && now.monotonic_ms > pending_->deadline_ms) {
    roll_back("generation " + std::to_string(pending_->next->number()) + " did not start within " +
                  std::to_string(ready_timeout_ms / 1000) + " s",
              now);
  }
  for (auto& g : generations_) g->tick(ctx_, now);
  for (auto& h : helpers_) h.tick(ctx_.ops, now);
}

void child_table::stop(bool graceful, clock_reading now) {
  if (pending_) roll_back("the instance is stopping", now, false);
  for (auto& g : generations_) {
    if (graceful) {
      g->drain(ctx_, now);
    } else {
      g->stop(ctx_, now);
    }
  }
  forget_finished();
}

void child_table::hand_over_all(clock_reading now) {
  if (pending_) roll_back("the master is being replaced by an upgrade", now, false);
  for (auto& g : generations_) g->drain(ctx_, now, /*hand_over=*/true);
  forget_finished();
}

bool child_table::holds_row(std::size_t row) const {
  return std::any_of(generations_.begin(), generations_.end(),
                     [row](const auto& g) { return g->holds_row(row); });
}

void child_table::stop_helpers() {
  for (auto& h : helpers_) h.stop(ctx_.ops);
}

void child_table::resume_helpers(clock_reading now) {
  for (auto& h : helpers_) h.resume(ctx_.ops, now);
}

std::size_t child_table::tell_workers(char message) {
  std::size_t told = 0;
  for (auto& g : generations_) told += g->tell_workers(ctx_, message);
  return told;
}

std::size_t child_table::live_workers() const {
  std::size_t n = 0;
  for (const auto& g : generations_) n += g->live_workers();
  return n;
}

std::size_t child_table::live_helpers() const {
  return static_cast<std::size_t>(std::count_if(
      helpers_.begin(), helpers_.end(), [](const helper_child& h) { return h.pid() != 0; }));
}

std::vector<std::size_t> child_table::free_rows(std::size_t wanted) const {
  std::vector<std::size_t> rows;
  for (std::size_t row = 0; row < shm::max_worker_slots && rows.size() < wanted; ++row) {
    // A row none of ours holds may still be a previous master's during an upgrade: its state
    // shows until that master has reaped the worker.
    const bool shown = ctx_.table.workers[row].state.load() != shm::worker_state::empty;
    if (!holds_row(row) && !shown) rows.push_back(row);
  }
  return rows;
}

generation* child_table::owner_of_row(std::size_t row) {
  for (auto& g : generations_) {
    if (g->holds_row(row)) return g.get();
  }
  return nullptr;
}

void child_table::forget_finished() {
  // The serving and the pending generation stay whatever their slots do; others go once
  // their last worker is reaped.
  std::erase_if(generations_, [this](const std::unique_ptr<generation>& g) {
    return g.get() != serving_ && !(pending_ && g.get() == pending_->next) && g->finished();
  });
}

}  // namespace wslb::supervisor
