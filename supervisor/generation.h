// A generation: the workers forked together with one configuration, and everything about their
// slots. It owns its configuration snapshot (its workers are always respawned with it), its
// slots and their lifecycle, and its own state:
//
//   pending  --every worker ready-->  serving  --a newer one serves, or stop-->  draining
//      |                                                                            |
//      +--roll-back (a worker died at start, timeout, stop)--> gone <--last one out-+
//
// It is the one writer of its slots' lifecycle fields in the table (pid, state, generation,
// started/backoff/drain times), through publish(). Master only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/config.h"
#include "supervisor/child_ops.h"
#include "supervisor/respawn_policy.h"

namespace wslb::supervisor {

// Beyond its drain deadline a worker gets this long (its close window included) before the
// master kills it; a worker told to stop at once gets stop_kill_grace_ms.
inline constexpr std::int64_t drain_kill_grace_ms = 5'000;
inline constexpr std::int64_t stop_kill_grace_ms = 3'000;

enum class generation_state { pending, serving, draining, gone };

// A slot's lifecycle; the table shows each phase as a shm::worker_state.
enum class slot_phase {
  starting,   // forked, not yet accepting                       (table: starting)
  running,    // accepting and relaying                          (running)
  draining,   // asked to drain or stop; its process lives on    (draining)
  discarded,  // its generation was rolled back; the process is being ended (empty)
  backoff,    // died right after start; respawned when due      (backoff)
  failed,     // exited with the fatal-configuration code        (failed)
  released,   // nothing left: the row is free for any generation (empty)
};

const char* to_string(generation_state s);

// What the generation needs to act: the seam, the table, the listener its workers accept on,
// and how to make a worker's body (the production one runs worker::run_worker).
struct generation_context {
  child_ops& ops;
  shm::table& table;
  int listen_fd = -1;
  // The body of the worker in `row` for generation `number` with `cfg`.
  std::function<std::function<int(int)>(const std::shared_ptr<const config>& cfg,
                                        std::size_t row, std::uint32_t number)>
      worker_body;
};

// How a generation took the exit of one of its workers.
enum class exit_outcome {
  not_ours,
  expected,      // it had been asked to exit (drain, stop, roll-back)
  respawned,     // a crash after a stable run: forked again at once
  backing_off,   // a failed start: forked again when its delay is over
  failed,        // exit code 78: not respawned
  failed_start,  // a pending generation's worker died: the generation cannot start
};

class generation {
 public:
  generation(std::uint32_t number, std::shared_ptr<const config> cfg, generation_state state);

  std::uint32_t number() const { return number_; }
  const std::shared_ptr<const config>& cfg() const { return cfg_; }
  generation_state state() const { return state_; }

  // Forks one worker in each of `rows` (rows no generation holds). False when a fork failed;
  // the workers that did start are the caller's to end (roll_back()).
  bool start(generation_context& ctx, const std::vector<std::size_t>& rows, clock_reading now);

  // Worker `row` said it accepts. False when the row is not one of this generation's.
  bool on_ready(generation_context& ctx, std::size_t row);
  // A child exited: returns how this generation took it (not_ours when the pid is not its).
  // `why` is set to a line for the log and, for failed_start, the reply.
  exit_outcome on_exit(generation_context& ctx, const exited_child& exited, clock_reading now,
                       std::string& why);
  // Respawns slots whose backoff is over; kills processes past their deadline.
  void tick(generation_context& ctx, clock_reading now);

  // pending -> serving.
  void serve();
  // The serving generation's backends changed at run time (`wslb backend add|remove`): `cfg`
  // replaces its snapshot, so a respawned worker starts with it; running workers follow the
  // table (worker/backend_set.h). Only the backends may differ from the snapshot it replaces.
  void amend(std::shared_ptr<const config> cfg) { cfg_ = std::move(cfg); }
  // Every live worker stops accepting and drains (until cfg.drain_timeout, then is killed);
  // slots without a process are released. With `hand_over` the workers first pass their
  // established tunnels to the serving generation (msg_handover). -> draining.
  void drain(generation_context& ctx, clock_reading now, bool hand_over = false);
  // Every live worker closes everything at once (killed after stop_kill_grace_ms). -> draining.
  void stop(generation_context& ctx, clock_reading now);
  // Roll-back of a pending generation: its workers are ended (a ready one told to stop, the
  // others killed) and its rows show empty at once. -> gone.
  void roll_back(generation_context& ctx, clock_reading now);

  // Sends `message` to every live worker (one that drains included); returns how many.
  std::size_t tell_workers(generation_context& ctx, char message);

  bool all_ready() const;
  bool holds_row(std::size_t row) const;
  // No slot holds a process or a row any more: the object can go.
  bool finished() const;
  std::size_t live_workers() const;
  // Live client connections in this generation's rows, for the operator's message.
  std::uint64_t connections(const shm::table& t) const;

 private:
  struct slot {
    std::size_t row = 0;
    slot_phase phase = slot_phase::released;
    pid_t pid = 0;
    std::int64_t started_ms = 0;        // monotonic
    std::int64_t backoff_until_ms = 0;  // monotonic, while phase == backoff
    std::int64_t kill_at_ms = 0;        // monotonic; 0 = no deadline
    respawn_policy policy;
  };

  void spawn(generation_context& ctx, slot& s, clock_reading now);
  // Sends `message` (drain or stop) and kills the process if it still lives at `kill_at_ms`.
  void ask_to_exit(generation_context& ctx, slot& s, char message, std::int64_t kill_at_ms);
  // The one place a slot's phase changes and reaches the table.
  void publish(generation_context& ctx, slot& s, slot_phase phase, clock_reading now,
               std::int64_t shown_until_unix_ms = 0);
  slot* slot_of_pid(pid_t pid);

  std::uint32_t number_;
  std::shared_ptr<const config> cfg_;
  generation_state state_;
  std::vector<slot> slots_;
};

}  // namespace wslb::supervisor
