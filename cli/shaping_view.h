// The load-shaping part of `wslb status`: per backend its maxconn, slow-start ramp, closes by
// cause (rebalance, evacuate) and an evacuation's progress; for the instance the rebalance
// plan and its progress. Pure, like status_view.
#pragma once

#include <cstdint>
#include <string>

#include "shm/layout.h"
#include "shm/table_ops.h"

namespace wslb::cli {

// JSON members (each starting with ',') for one backend row: "slowstart_ms", "ramp_pct" (only
// while ramping), "closed" {"rebalance","evacuate"}, "evacuation" (null or {"remain",
// "ends_in_ms"}), "rebalance" (null or {"target","surplus","shed","rate_per_s"}).
std::string shaping_json(const shm::backend_row& row, const shm::backend_totals& sums,
                         std::int64_t now_unix_ms);
// JSON member ",\"rebalance\":{...}" for the instance: mode, running, plans, and while
// running how long since it began and the expected time left.
std::string rebalance_json(const shm::table& t, std::int64_t now_unix_ms);

// The same as text: one indented line per backend that has anything to show (or ""), and a
// REBALANCE line for the instance.
std::string shaping_text(const shm::backend_row& row, const shm::backend_totals& sums,
                         std::int64_t now_unix_ms);
std::string rebalance_text(const shm::table& t, std::int64_t now_unix_ms);

}  // namespace wslb::cli
