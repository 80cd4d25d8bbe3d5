// The load-shaping control commands: `rebalance [dry-run]` and
// `backend-evacuate HOST:PORT MS|cancel` (sent by `wslb rebalance` and `wslb backend evacuate`).
#include <sstream>

#include "common/log.h"
#include "supervisor/master_state.h"

namespace wslb::supervisor {

namespace {

// A manual plan held for a handover that keeps moving tunnels (a stream of reloads) is refused
// after this long, asking to retry.
constexpr std::int64_t rebalance_wait_limit_ms = 30'000;

}  // namespace

void master::run_rebalance(bool dry_run, control_request_ptr request) {
  const shaping_config& settings = children_->serving().cfg()->shaping;
  shm::table& t = table_->get();
  const rebalance_plan plan = rebalancer_.plan_now(t, settings);
  std::istringstream lines(describe_plan(plan));
  for (std::string line; std::getline(lines, line);) request->send(line + "\n");
  if (dry_run) return request->finish(true, "dry run: nothing changed");
  if (settings.rebalance == rebalance_mode::off) {
    return request->finish(false, "rebalancing is off (--rebalance off)");
  }
  if (stopping_) return request->finish(false, "the instance is stopping");
  request->finish(true, rebalancer_.start(t, plan, unix_ms()));
}

void master::answer_waiting_rebalances(std::int64_t now_ms) {
  if (waiting_rebalances_.empty()) return;
  const bool still = rebalancer_.tunnels_still(table_->get(), now_ms);
  std::vector<waiting_rebalance> waiting = std::move(waiting_rebalances_);
  waiting_rebalances_.clear();
  for (waiting_rebalance& w : waiting) {
    if (stopping_) {
      w.request->finish(false, "the instance is stopping");
    } else if (still) {
      run_rebalance(w.dry_run, w.request);
    } else if (now_ms >= w.give_up_ms) {
      w.request->finish(false, "connections are still being handed over between workers after " +
                                   std::to_string(rebalance_wait_limit_ms / 1000) +
                                   " s; retry once they have settled");
    } else {
      waiting_rebalances_.push_back(std::move(w));
    }
  }
}

void master::register_shaping_commands() {
  commands_.add("rebalance", [this](const std::string& arguments, control_request_ptr request) {
    if (arguments != "" && arguments != "dry-run") {
      return request->finish(false, "rebalance takes no argument but 'dry-run'");
    }
    const bool dry_run = arguments == "dry-run";
    const std::int64_t now_ms = unix_ms();
    if (rebalancer_.tunnels_still(table_->get(), now_ms)) return run_rebalance(dry_run, request);
    // A tunnel in flight between workers counts on neither side: the plan is made once the
    // handover has settled (housekeeping looks again every tick).
    request->send("waiting for the connections being handed over between workers to settle\n");
    waiting_rebalances_.push_back({request, dry_run, now_ms + rebalance_wait_limit_ms});
  });
  commands_.add("backend-evacuate", [this](const std::string& arguments,
                                           control_request_ptr request) {
    std::istringstream words(arguments);
    std::string address, over;
    words >> address >> over;
    std::uint32_t over_ms = 0;
    const bool cancel = over == "cancel";
    if (!cancel) {
      try {
        std::size_t used = 0;
        const unsigned long v = std::stoul(over, &used);
        if (used != over.size() || v > 86'400'000) throw std::out_of_range("over");
        over_ms = static_cast<std::uint32_t>(v);
      } catch (const std::exception&) {
        return request->finish(false, "backend-evacuate takes HOST:PORT and milliseconds or 'cancel'");
      }
    }
    std::string reply;
    const std::string error =
        rebalancer_.evacuate(table_->get(), address, over_ms, cancel, unix_ms(), reply);
    if (!error.empty()) return request->finish(false, error);
    operations_.note("evacuate", reply);
    request->finish(true, reply);
  });
}

}  // namespace wslb::supervisor
