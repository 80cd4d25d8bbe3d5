// The master's side of load shaping: runs rebalance plans (supervisor/rebalance_plan.h) by
// writing each backend's shed rate into the table, watches their progress and ends them, starts
// them by itself in --rebalance auto, and sets and clears `backend evacuate`. The workers do the
// closing (worker/shedding.h). One per master; everything runs on the master's loop, on its
// housekeeping tick. The one writer of the rebalance and evacuation fields of the table.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "common/config.h"
#include "shm/layout.h"
#include "supervisor/rebalance_plan.h"

namespace wslb::supervisor {

class rebalancer {
 public:
  // The plan for the table as it is now, under `settings` (the serving configuration's).
  rebalance_plan plan_now(const shm::table& t, const shaping_config& settings) const;

  // Starts `plan` (replacing one under way). Returns the reply for the operator.
  std::string start(shm::table& t, const rebalance_plan& plan, std::int64_t now_ms);

  // Every housekeeping tick: ends backends (and the plan) that shed their surplus, reached
  // their target or have nothing left to shed (see stall_ms_for), or a
  // plan that ran far past its expected time; in auto mode starts a plan
  // once something changed (a backend added, back up after its slow start, a new weight).
  void tick(shm::table& t, const shaping_config& settings, std::int64_t now_ms);

  // `backend evacuate`: no new connections for the backend named `address`, and its
  // connections closed evenly until now + over_ms; `cancel` ends it (the backend takes new
  // connections again). Returns "" and sets `reply`, or the error.
  std::string evacuate(shm::table& t, const std::string& address, std::uint32_t over_ms,
                       bool cancel, std::int64_t now_ms, std::string& reply);

  // A reload with handover moves every tunnel right after it commits; a tunnel sent and not
  // yet taken in counts on neither side, and a plan made then sees too few connections (754
  // of 1,000 in one run: it shed 252 instead of 334 and left the load uneven). True once the
  // tunnels sent minus taken in (shm::handover_lost) has not moved for handover_settle_ms;
  // auto plans only then, and the master holds a manual `rebalance` until then.
  bool tunnels_still(const shm::table& t, std::int64_t now_ms);
  static constexpr std::int64_t handover_settle_ms = 1'000;

 private:
  void finish(shm::table& t, std::int64_t now_ms, const char* why);
  // What auto mode watches for, per backend row.
  struct seen_row {
    shm::backend_state state = shm::backend_state::empty;
    std::uint32_t weight = 0;
    std::int64_t up_since_ms = 0;
    std::uint32_t healthy = 0;
  };
  std::array<seen_row, shm::max_backends> seen_{};
  // Per backend row under a plan: its shed count when it last went up, and when.
  struct progress {
    std::uint64_t shed = 0;
    std::int64_t since_ms = 0;
  };
  std::array<progress, shm::max_backends> progress_{};
  bool seen_once_ = false;
  std::int64_t auto_due_ms_ = 0;      // 0: nothing pending
  std::int64_t changed_ms_ = 0;       // when auto mode last saw a change
  std::int64_t last_end_ms_ = 0;
  std::int64_t deadline_ms_ = 0;      // a plan still running then is ended
  // Auto also waits for the change it reacts to to stand still as long.
  bool handover_settled(const shm::table& t, std::int64_t now_ms);
  std::uint64_t transit_seen_ = 0;
  std::int64_t transit_changed_ms_ = 0;
};

// How long a backend shedding at `rate_milli` (connections/s x 1000) may go without a single
// close before its part of the plan ends as having nothing left to shed: five closes' worth of
// its pace, at least 5 s, and not before the plan is as old as the minimum age (what was too
// young at the start has come of age). Its remaining connections stay by their key (hash
// modes) or their affinity cookie; without this it would run on to the plan's deadline (twice
// its expected time and a minute), shedding nothing and holding off auto.
std::int64_t stall_ms_for(std::uint64_t rate_milli);

}  // namespace wslb::supervisor
