// Planning a rebalance of long-lived connections: from each backend's live count and weight,
// its target share, the surplus it should shed, the pace, and how long that should take. Pure
// (no table, no clock), so the unit tests check the arithmetic; the master's rebalancer runs it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace wslb::supervisor {

struct backend_load {
  std::string name;        // HOST:PORT, for the printed plan
  std::size_t row = 0;     // the backend's table row
  std::uint64_t current = 0;
  std::uint32_t weight = 1;
  bool accepting = true;   // healthy, active, not evacuating: takes part in the plan
};

struct plan_settings {
  std::uint32_t tolerance_permille = 100;  // shed only above target x (1 + tolerance)
  std::uint32_t rate_permille = 20;        // per backend, of its connections per second
  std::uint32_t max_rate = 100;            // instance-wide, connections per second
  std::uint32_t workers = 1;               // workers holding connections (each paces its own)
};

struct backend_plan {
  std::string name;
  std::size_t row = 0;
  bool accepting = true;
  std::uint64_t current = 0;
  std::uint64_t target = 0;     // N x weight / sum of weights over the accepting backends
  std::uint64_t surplus = 0;    // current - target when above target x (1 + tolerance), else 0
  std::uint64_t rate_milli = 0; // shed pace, connections per second x 1000 (0: not shedding)
  std::uint64_t expected_ms = 0;
};

struct rebalance_plan {
  std::vector<backend_plan> backends;
  std::uint64_t total = 0;          // N: live connections on the accepting backends
  std::uint64_t total_surplus = 0;
  std::uint64_t expected_ms = 0;    // the slowest backend's surplus at its pace
  bool needed() const { return total_surplus > 0; }
};

// The plan for `loads`. Each backend over target x (1 + tolerance) sheds down to its target at
// `rate_permille` of its live connections per second (at least 1/s); when those paces add up to
// more than the cap, all are scaled down alike to fit under it. The cap the paces add up to is
// 80 % of `max_rate` less one per worker and shedding backend: each worker pays its share in
// whole closes on a 100 ms tick, so any one second may see one more per worker and backend
// than the pace (and the closes' timing jitters), and the cap must hold in every second.
rebalance_plan make_plan(const std::vector<backend_load>& loads, const plan_settings& settings);

// The plan as `wslb rebalance --dry-run` prints it: one line per backend (current, target,
// surplus, pace, expected time) and a total line.
std::string describe_plan(const rebalance_plan& plan);

}  // namespace wslb::supervisor
