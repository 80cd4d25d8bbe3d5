#include "supervisor/rebalance_plan.h"

#include <algorithm>
#include <cstdio>

namespace wslb::supervisor {

rebalance_plan make_plan(const std::vector<backend_load>& loads, const plan_settings& settings) {
  rebalance_plan plan;
  std::uint64_t weights = 0;
  for (const backend_load& b : loads) {
    if (!b.accepting) continue;
    plan.total += b.current;
    weights += b.weight;
  }
  std::uint64_t rates = 0;
  for (const backend_load& b : loads) {
    backend_plan p;
    p.name = b.name;
    p.row = b.row;
    p.accepting = b.accepting;
    p.current = b.current;
    if (b.accepting && weights > 0) {
      p.target = (plan.total * b.weight + weights / 2) / weights;
      // Above target x (1 + tolerance), compared without division.
      if (p.current * 1000 > p.target * (1000 + settings.tolerance_permille)) {
        p.surplus = p.current - p.target;
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

std::string describe_plan(const rebalance_plan& plan) {
  std::string out;
  char line[256];
  std::snprintf(line, sizeof line, "%-24s %8s %8s %8s %10s %10s\n", "BACKEND", "CURRENT", "TARGET",
                "SURPLUS", "RATE/S", "EXPECTED");
  out += line;
  for (const backend_plan& p : plan.backends) {
    if (!p.accepting) {
      std::snprintf(line, sizeof line, "%-24s %8llu %8s\n", p.name.c_str(),
                    static_cast<unsigned long long>(p.current), "-");
    } else {
      std::snprintf(line, sizeof line, "%-24s %8llu %8llu %8llu %10.1f %9.1fs\n", p.name.c_str(),
                    static_cast<unsigned long long>(p.current),
                    static_cast<unsigned long long>(p.target),
                    static_cast<unsigned long long>(p.surplus),
                    static_cast<double>(p.rate_milli) / 1000.0,
                    static_cast<double>(p.expected_ms) / 1000.0);
    }
    out += line;
  }
  std::snprintf(line, sizeof line, "total %llu connections, %llu to move, expected %.1f s%s",
                static_cast<unsigned long long>(plan.total),
                static_cast<unsigned long long>(plan.total_surplus),
                static_cast<double>(plan.expected_ms) / 1000.0,
                plan.needed() ? "" : " (balanced within tolerance: nothing to do)");
  out += line;
  return out;
}

}  // namespace wslb::supervisor
