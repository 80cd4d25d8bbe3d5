#include "supervisor/rebalancer.h"

#include <algorithm>

#include "common/log.h"
#include "shm/cluster_view.h"
#include "shm/table_ops.h"

namespace wslb::supervisor {

namespace {

constexpr auto relaxed = std::memory_order_relaxed;
constexpr const char* who = "master";

bool in_use(const shm::backend_row& r) {
  const auto s = r.state.load(relaxed);
  return s == shm::backend_state::active || s == shm::backend_state::staged;
}

bool accepting(const shm::backend_row& r) {
  return r.state.load(relaxed) == shm::backend_state::active && r.healthy.load(relaxed) == 1 &&
         r.evacuate_end_ms.load(relaxed) == 0 && r.admin.load(relaxed) == shm::admin_state::ready;
}

// In a tier a plan needs the other nodes' counts on every backend, and a backend that a
// reload just added has them only once the cluster agent has published after it: true once
// the agent finished a round after `since_ms`, or is not exchanging now (then the others'
// figures age out anyway), or three intervals went by.
bool tier_counts_current(const shm::table& t, std::int64_t since_ms, std::int64_t now_ms) {
  const shm::cluster_row& c = t.cluster;
  if (c.link.load(relaxed) != shm::cluster_link::connected) return true;
  if (c.last_round_ms.load(relaxed) > since_ms) return true;
  return now_ms > since_ms + 3 * static_cast<std::int64_t>(c.interval_ms.load(relaxed));
}

}  // namespace

rebalance_plan rebalancer::plan_now(const shm::table& t, const shaping_config& settings) const {
  std::vector<backend_load> loads;
  for (std::size_t i = 0; i < shm::backend_rows_in_use(t); ++i) {
    const shm::backend_row& r = t.backends[i];
    if (!in_use(r)) continue;
    backend_load b;
    b.name = shm::address_of(r);
    b.row = i;
    b.current = shm::sum_active(t, i);
    b.others = r.cluster_active.load(relaxed);
    b.weight = std::max<std::uint32_t>(1, r.weight.load(relaxed));
    b.accepting = accepting(r);
    loads.push_back(b);
  }
  std::uint32_t workers = 0;
  for (std::size_t s = 0; s < shm::worker_rows_in_use(t); ++s) {
    workers += t.workers[s].connections.load(relaxed) > 0 ? 1 : 0;
  }
  return make_plan(loads, plan_settings{settings.tolerance_permille, settings.rate_permille,
                                        settings.max_rate, workers});
}

std::string rebalancer::start(shm::table& t, const rebalance_plan& plan, std::int64_t now_ms) {
  for (const backend_plan& p : plan.backends) {
    shm::backend_row& r = t.backends[p.row];
    r.rebalance_target.store(p.target, relaxed);
    r.rebalance_surplus.store(p.surplus, relaxed);
    r.rebalance_shed_base.store(shm::sum_shed(t, p.row), relaxed);
    r.shed_rate_milli.store(static_cast<std::uint32_t>(p.rate_milli), relaxed);
    progress_[p.row] = progress{0, now_ms};
  }
  auto& h = t.header;
  if (!plan.needed()) {
    h.rebalance_running.store(0, relaxed);
    if (plan.tier_surplus > 0) {
      return "nothing to move from this node: the tier's surplus of " +
             std::to_string(plan.tier_surplus) + " is held by the other nodes";
    }
    return "balanced within tolerance: nothing to move (" + std::to_string(plan.total) +
           " connections)";
  }
  h.rebalance_started_ms.store(now_ms, relaxed);
  h.rebalance_expected_end_ms.store(now_ms + static_cast<std::int64_t>(plan.expected_ms), relaxed);
  h.rebalance_plans.fetch_add(1, relaxed);
  h.rebalance_running.store(1, relaxed);
  // Connections younger than the minimum age wait for it; beyond twice the plan and a minute
  // more, what is left is not worth chasing.
  deadline_ms_ = now_ms + 2 * static_cast<std::int64_t>(plan.expected_ms) + 60'000;
  const std::string share =
      plan.tier ? " (this node's share of " + std::to_string(plan.tier_surplus) + " tier-wide)" : "";
  const std::string summary = "rebalancing: " + std::to_string(plan.total_surplus) + " of " +
                              std::to_string(plan.total) + " connections to move" + share +
                              ", expected " + std::to_string((plan.expected_ms + 999) / 1000) + " s";
  log_line(who, "%s", summary.c_str());
  return summary;
}

std::int64_t stall_ms_for(std::uint64_t rate_milli) {
  if (rate_milli == 0) return 5'000;
  return std::max<std::int64_t>(5'000, static_cast<std::int64_t>(5'000'000 / rate_milli));
}

void rebalancer::finish(shm::table& t, std::int64_t now_ms, const char* why) {
  std::uint64_t shed = 0;
  for (std::size_t i = 0; i < shm::backend_rows_in_use(t); ++i) {
    shm::backend_row& r = t.backends[i];
    r.shed_rate_milli.store(0, relaxed);
    const std::uint64_t base = r.rebalance_shed_base.load(relaxed);
    const std::uint64_t now_shed = shm::sum_shed(t, i);
    if (r.rebalance_surplus.load(relaxed) != 0 && now_shed > base) shed += now_shed - base;
  }
  t.header.rebalance_running.store(0, relaxed);
  last_end_ms_ = now_ms;
  log_line(who, "rebalance %s: %llu connections shed in %lld ms", why,
           static_cast<unsigned long long>(shed),
           static_cast<long long>(now_ms - t.header.rebalance_started_ms.load(relaxed)));
}

bool rebalancer::tunnels_still(const shm::table& t, std::int64_t now_ms) {
  const std::uint64_t unmatched = shm::handover_lost(t);
  if (unmatched != transit_seen_) {
    transit_seen_ = unmatched;
    transit_changed_ms_ = now_ms;
  }
  return now_ms - transit_changed_ms_ >= handover_settle_ms;
}

bool rebalancer::handover_settled(const shm::table& t, std::int64_t now_ms) {
  return tunnels_still(t, now_ms) && now_ms - changed_ms_ >= handover_settle_ms;
}

void rebalancer::tick(shm::table& t, const shaping_config& settings, std::int64_t now_ms) {
  tunnels_still(t, now_ms);  // follows the count every tick, so a change is seen when it comes
  t.header.rebalance_mode.store(static_cast<std::uint32_t>(settings.rebalance), relaxed);
  if (t.header.rebalance_running.load(relaxed) != 0) {
    bool shedding = false;
    for (std::size_t i = 0; i < shm::backend_rows_in_use(t); ++i) {
      shm::backend_row& r = t.backends[i];
      if (r.shed_rate_milli.load(relaxed) == 0) continue;
      const std::uint64_t all_shed = shm::sum_shed(t, i);
      const std::uint64_t shed = all_shed - std::min(all_shed, r.rebalance_shed_base.load(relaxed));
      // The target is the tier's (this node's count without --cluster): a backend the other
      // nodes have already brought down to it needs nothing more from this one.
      const std::uint64_t current = shm::tier_active(t, i);
      progress& p = progress_[i];
      if (shed > p.shed) p = progress{shed, now_ms};
      // Connections too young at the start have come of age by start + min age: only then
      // does a backend without closes have nothing left to shed.
      const bool stalled =
          now_ms - p.since_ms >= stall_ms_for(r.shed_rate_milli.load(relaxed)) &&
          now_ms - t.header.rebalance_started_ms.load(relaxed) >= settings.min_age_ms;
      if (shed >= r.rebalance_surplus.load(relaxed) || current <= r.rebalance_target.load(relaxed) ||
          !in_use(r) || stalled) {
        r.shed_rate_milli.store(0, relaxed);
        log_line(who, "rebalance of %s ends: %llu shed of %llu planned, %llu now (target %llu)%s",
                 std::string(shm::address_of(r)).c_str(),
                 static_cast<unsigned long long>(shed),
                 static_cast<unsigned long long>(r.rebalance_surplus.load(relaxed)),
                 static_cast<unsigned long long>(current),
                 static_cast<unsigned long long>(r.rebalance_target.load(relaxed)),
                 stalled ? "; nothing left to shed (the rest stay by their key or cookie, or are "
                           "younger than the minimum age)"
                         : "");
      } else {
        shedding = true;
      }
    }
    if (!shedding) finish(t, now_ms, "done");
    else if (now_ms >= deadline_ms_) finish(t, now_ms, "ended past its expected time");
  }
  if (settings.rebalance == rebalance_mode::off) {
    if (t.header.rebalance_running.load(relaxed) != 0) finish(t, now_ms, "stopped (--rebalance off)");
    return;
  }
  // Auto: something changed that leaves load uneven (a backend added, back up, reweighted).
  // The plan waits for the newcomer's slow start; it starts only when some backend is out of
  // the tolerance band, and not within the minimum age of the last one (whose clients could not
  // be shed again yet anyway): no oscillation.
  for (std::size_t i = 0; i < shm::backend_rows_in_use(t); ++i) {
    const shm::backend_row& r = t.backends[i];
    seen_row now{r.state.load(relaxed), r.weight.load(relaxed), r.up_since_ms.load(relaxed),
                 r.healthy.load(relaxed)};
    seen_row& before = seen_[i];
    const bool came = now.state == shm::backend_state::active &&
                      (before.state != shm::backend_state::active || now.up_since_ms != before.up_since_ms ||
                       (now.healthy == 1 && before.healthy != 1));
    const bool reweighted = now.state == shm::backend_state::active && before.weight != 0 &&
                            now.weight != before.weight;
    if (seen_once_ && (came || reweighted)) {
      const std::int64_t ready = std::max(now_ms, now.up_since_ms + r.slowstart_ms.load(relaxed));
      auto_due_ms_ = std::max(auto_due_ms_, ready);
      changed_ms_ = now_ms;
    }
    before = now;
  }
  seen_once_ = true;
  if (settings.rebalance != rebalance_mode::auto_ || auto_due_ms_ == 0 || now_ms < auto_due_ms_) {
    return;
  }
  if (t.header.rebalance_running.load(relaxed) != 0 ||
      (last_end_ms_ != 0 && now_ms < last_end_ms_ + settings.min_age_ms) ||
      !tier_counts_current(t, changed_ms_, now_ms) || !handover_settled(t, now_ms)) {
    return;
  }
  auto_due_ms_ = 0;
  const rebalance_plan plan = plan_now(t, settings);
  if (plan.needed()) start(t, plan, now_ms);
}

std::string rebalancer::evacuate(shm::table& t, const std::string& address, std::uint32_t over_ms,
                                 bool cancel, std::int64_t now_ms, std::string& reply) {
  for (std::size_t i = 0; i < shm::backend_rows_in_use(t); ++i) {
    shm::backend_row& r = t.backends[i];
    if (!in_use(r) || address != shm::address_of(r)) {
      continue;
    }
    if (cancel) {
      r.evacuate_end_ms.store(0, relaxed);
      r.evacuate_start_ms.store(0, relaxed);
      reply = "evacuation of " + address + " cancelled: it takes new connections again";
    } else {
      // End first (turns picking off), then the start the workers key their line on.
      r.evacuate_end_ms.store(now_ms + over_ms, relaxed);
      r.evacuate_start_ms.store(now_ms, relaxed);
      reply = "evacuating " + address + ": " + std::to_string(shm::sum_active(t, i)) +
              " connections over " + std::to_string(over_ms / 1000) + " s; no new ones";
    }
    log_line(who, "%s", reply.c_str());
    return {};
  }
  return "no backend " + address + " in the running configuration";
}

}  // namespace wslb::supervisor
