#include "supervisor/rebalance_plan.h"

#include <algorithm>
#include <cstdio>

namespace wslb::supervisor {

rebalance_plan make_plan(const std::vector<backend_load>& loads, const plan_settings& settings) {
  rebalance_plan plan;
  std::uint64_t weights = 0;
  for (const backend_load& b : loads) {
    if (!b.accepting) continue;
    plan.total += b.current + b.others;
    weights += b.weight;
    plan.tier = plan.tier || b.others > 0;
  }
  std::uint64_t rates = 0;
  for (const backend_load& b : loads) {
    backend_plan p;
    p.name = b.name;
    p.row = b.row;
    p.accepting = b.accepting;
    p.current = b.current;
    p.tier_current = b.current + b.others;
    if (b.accepting && weights > 0) {
      p.target = (plan.total * b.weight + weights / 2) / weights;
      // Above target x (1 + tolerance), compared without division.
      if (p.tier_current * 1000 > p.target * (1000 + settings.tolerance_permille)) {
        p.tier_surplus = p.tier_current - p.target;
        plan.tier_surplus += p.tier_surplus;
        // Every node takes the part of the surplus it holds, from counts that are at most an
        // interval apart: the shares add up to the surplus, give or take one per node.
        p.surplus = (p.tier_surplus * p.current + p.tier_current / 2) / p.tier_current;
      }
      if (p.surplus > 0) {
        p.rate_milli = std::max<std::uint64_t>(1000, p.current * settings.rate_permille);
        rates += p.rate_milli;
      }
    }
    plan.backends.push_back(p);
  }
  std::uint64_t shedding = 0;
  for (const backend_plan& p : plan.backends) shedding += p.surplus > 0 ? 1 : 0;
  const std::uint64_t cap_full = std::uint64_t{settings.max_rate} * 1000;
  const std::uint64_t rounding = std::uint64_t{std::max(1u, settings.workers)} * shedding * 1000;
  // Never below a tenth of the cap: with a cap that small the rounding cannot be kept under it.
  const std::uint64_t cap_milli =
      std::max(cap_full / 10, cap_full * 8 / 10 - std::min(cap_full * 8 / 10, rounding));
  for (backend_plan& p : plan.backends) {
    if (p.surplus == 0) continue;
    if (rates > cap_milli) p.rate_milli = std::max<std::uint64_t>(1, p.rate_milli * cap_milli / rates);
    // surplus / (rate_milli / 1000) seconds, in ms.
    p.expected_ms = (p.surplus * 1'000'000 + p.rate_milli - 1) / p.rate_milli;
    plan.total_surplus += p.surplus;
    plan.expected_ms = std::max(plan.expected_ms, p.expected_ms);
  }
  return plan;
}

namespace {

// One line of the printed plan: the backend's name, then right-aligned columns.
std::string plan_line(const std::string& name, const std::vector<std::string>& cells) {
  char cell[64];
  std::snprintf(cell, sizeof cell, "%-24s", name.c_str());
  std::string out = cell;
  for (const std::string& c : cells) {
    std::snprintf(cell, sizeof cell, " %9s", c.c_str());
    out += cell;
  }
  return out + "\n";
}

std::string tenths(std::uint64_t milli) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f", static_cast<double>(milli) / 1000.0);
  return text;
}

}  // namespace

std::string describe_plan(const rebalance_plan& plan) {
  // In a tier, the tier's count and surplus beside this node's count and share.
  const bool tier = plan.tier;
  std::string out = plan_line("BACKEND", tier ? std::vector<std::string>{"HERE", "TIER", "TARGET",
                                                                         "SURPLUS", "SHED HERE",
                                                                         "RATE/S", "EXPECTED"}
                                              : std::vector<std::string>{"CURRENT", "TARGET",
                                                                         "SURPLUS", "RATE/S",
                                                                         "EXPECTED"});
  for (const backend_plan& p : plan.backends) {
    std::vector<std::string> cells{std::to_string(p.current)};
    if (tier) cells.push_back(std::to_string(p.tier_current));
    if (!p.accepting) {
      cells.push_back("-");
    } else {
      cells.push_back(std::to_string(p.target));
      if (tier) cells.push_back(std::to_string(p.tier_surplus));
      cells.push_back(std::to_string(p.surplus));
      cells.push_back(tenths(p.rate_milli));
      cells.push_back(tenths(p.expected_ms) + "s");
    }
    out += plan_line(p.name, cells);
  }
  const std::string expected = ", expected " + tenths(plan.expected_ms) + " s";
  if (!tier) {
    return out + "total " + std::to_string(plan.total) + " connections, " +
           std::to_string(plan.total_surplus) + " to move" + expected +
           (plan.needed() ? "" : " (balanced within tolerance: nothing to do)");
  }
  return out + "tier total " + std::to_string(plan.total) + " connections, " +
         std::to_string(plan.tier_surplus) + " to move tier-wide, " +
         std::to_string(plan.total_surplus) + " of them from this node" + expected +
         (plan.tier_surplus == 0 ? " (balanced within tolerance: nothing to do)"
          : plan.needed()        ? ""
                                 : " (nothing held here to shed)");
}

}  // namespace wslb::supervisor
