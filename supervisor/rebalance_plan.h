// Planning a rebalance of long-lived connections: from each backend's live count and weight,
// its target share, the surplus it should shed, the pace, and how long that should take. Pure
// (no table, no clock), so the unit tests check the arithmetic; the master's rebalancer runs it.
//
// In a tier (--cluster) the targets are the tier's: N counts every node's connections (this
// node's exact ones plus the others' last-known ones), and each node sheds only its own share
// of a backend's surplus, in proportion to its part of the backend's connections, so that the
// nodes planning together shed the surplus once, not once each.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace wslb::supervisor {

struct backend_load {
  std::string name;        // HOST:PORT, for the printed plan
  std::size_t row = 0;     // the backend's table row
  std::uint64_t current = 0;  // this node's live connections
  std::uint32_t weight = 1;
  bool accepting = true;   // healthy, active, not evacuating: takes part in the plan
  std::uint64_t others = 0;   // the other nodes' last-known live connections (0 without --cluster)
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
  std::uint64_t current = 0;       // this node's
  std::uint64_t tier_current = 0;  // the tier's: current + the other nodes'
  std::uint64_t target = 0;        // N x weight / sum of weights over the accepting backends
  // tier_current - target when above target x (1 + tolerance), else 0; and this node's share
  // of it: tier_surplus x current / tier_current (all of it without other nodes).
  std::uint64_t tier_surplus = 0;
  std::uint64_t surplus = 0;
  std::uint64_t rate_milli = 0;    // this node's shed pace, connections/s x 1000 (0: none)
  std::uint64_t expected_ms = 0;
};

struct rebalance_plan {
  std::vector<backend_plan> backends;
  std::uint64_t total = 0;          // N: live connections on the accepting backends, tier-wide
  std::uint64_t total_surplus = 0;  // what this node sheds
  std::uint64_t tier_surplus = 0;   // what the tier's nodes shed together
  bool tier = false;                // other nodes hold connections on these backends
  std::uint64_t expected_ms = 0;    // the slowest backend's surplus at its pace
  bool needed() const { return total_surplus > 0; }
};

// The plan for `loads`. Each backend over target x (1 + tolerance) sheds down to its target at
// `rate_permille` of its live connections per second, at least 1/s (in a tier: this node's
// share at that rate of this node's connections, so every node's share takes about as long);
// when those paces add up to more than the cap, all are scaled down alike to fit under it.
// The cap the paces add up to is 80 % of `max_rate` less one per worker and shedding backend:
// each worker pays its share in whole closes on a 100 ms tick, owing for at most two ticks at
// a time (a worker that did not run for a while does not catch up), so any one second may see
// 1.2 x the pace plus one per worker and backend, which stays under the cap in every second.
rebalance_plan make_plan(const std::vector<backend_load>& loads, const plan_settings& settings);

// The plan as `wslb rebalance --dry-run` prints it: one line per backend (current, target,
// surplus, pace, expected time) and a total line; in a tier also the tier's count and surplus
// beside this node's count and share.
std::string describe_plan(const rebalance_plan& plan);

}  // namespace wslb::supervisor
