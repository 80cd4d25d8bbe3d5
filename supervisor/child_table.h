// The master's table of children: its generations (one serving, at most one pending, any
// number draining), its helper processes (the checker), and the restart in flight. It decides
// what happens to them; processes are forked, signalled and reaped through child_ops. Driven by
// the master's loop (channel messages, reaped exits, a periodic tick) and by its commands.
// Master only; pure apart from the seam and the table, so unit tests drive it with a fake.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "supervisor/generation.h"
#include "supervisor/helper_child.h"
#include "supervisor/reload_transaction.h"

namespace wslb::supervisor {

// How long new workers may take to report ready before a restart is rolled back.
inline constexpr std::int64_t ready_timeout_ms = 10'000;

class child_table {
 public:
  // The answer to whoever asked for a restart: ok, and the line to show.
  using reply = std::function<void(bool ok, const std::string& message)>;
  // Hears each restart transaction start, commit or roll back (`text`: the reply's line).
  // Every `started` is followed by exactly one `committed` or `rolled_back`.
  using observer =
      std::function<void(transaction_event, std::uint32_t generation, const std::string& text)>;

  explicit child_table(generation_context ctx) : ctx_(std::move(ctx)) {}

  // Adds a helper process (the checker) and starts it.
  helper_child& add_helper(helper_child h, clock_reading now);
  void set_observer(observer o) { observer_ = std::move(o); }
  // Tells the observer. The master reports `started` when a reload or restart is asked for, and
  // `rolled_back` when it refuses one before begin_restart (a bad file, say); the child table
  // reports the outcome of everything it was handed.
  void report(transaction_event e, std::uint32_t number, const std::string& text);
  // The number the next generation will have.
  std::uint32_t next_generation() const { return serving_->number() + 1; }

  // Starts generation `number` (1, or the next one after an upgrade) with `cfg`, serving at
  // once: there is nothing to roll back to.
  void start_first(std::shared_ptr<const config> cfg, clock_reading now, std::uint32_t number = 1);

  // Starts the next generation with `next`, whose reload steps `tx` has prepared. The
  // generation is committed (tx committed, old generation drained, `done(true, ...)`) once
  // every new worker is ready, or rolled back (new workers ended, tx rolled back,
  // `done(false, why)`) if a worker exits first, there are no free slots, or the ready
  // timeout passes. Refused at once while another restart is pending.
  void begin_restart(std::shared_ptr<const config> next, reload_transaction tx,
                     std::string summary, reply done, clock_reading now);
  bool restart_pending() const { return pending_.has_value(); }

  void on_child_message(child_id id, char message, clock_reading now);
  // Reaps every exited child (waitpid until none is left) and acts on each exit.
  void reap_children(clock_reading now);
  // Periodic: respawns due, kill deadlines, the ready timeout.
  void tick(clock_reading now);

  // Rolls back a pending restart, then drains (graceful) or stops every generation.
  void stop(bool graceful, clock_reading now);
  // An upgraded master serves now: every generation hands its tunnels over to its workers.
  void hand_over_all(clock_reading now);
  // Whether one of this master's generations holds table row `row`.
  bool holds_row(std::size_t row) const;
  // Stops the helpers; the master does this once no worker is left.
  void stop_helpers();
  // Starts the stopped helpers again (an upgraded master died: this one serves on).
  void resume_helpers(clock_reading now);
  // Sends `message` to every live worker of every generation (SIGUSR1: reopen the access
  // log); returns how many.
  std::size_t tell_workers(char message);
  std::size_t live_workers() const;
  std::size_t live_helpers() const;

  const generation& serving() const { return *serving_; }
  // A runtime change of the serving generation's backends (see generation::amend). The master
  // refuses one while a restart is pending.
  void amend_serving(std::shared_ptr<const config> cfg) { serving_->amend(std::move(cfg)); }

 private:
  struct pending_restart {
    generation* next = nullptr;
    reload_transaction tx;
    std::string summary;
    reply done;
    std::int64_t deadline_ms = 0;  // monotonic
  };

  void commit(clock_reading now);
  // Ends the pending generation and undoes its transaction; answers `why`, followed by
  // "generation N keeps serving" when `old_serves_on`.
  void roll_back(const std::string& why, clock_reading now, bool old_serves_on = true);
  std::vector<std::size_t> free_rows(std::size_t wanted) const;
  generation* owner_of_row(std::size_t row);
  void forget_finished();

  generation_context ctx_;
  std::vector<std::unique_ptr<generation>> generations_;
  generation* serving_ = nullptr;
  std::optional<pending_restart> pending_;
  std::vector<helper_child> helpers_;
  observer observer_;
};

}  // namespace wslb::supervisor
