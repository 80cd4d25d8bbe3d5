// Writing a probe's result into a backend's row of the shared table. The checker is the only
// process that raises `healthy`; a worker may lower it at any moment (passive marking), so the
// row is updated with compare-and-swap and never from a stale copy.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "checker/health_state.h"
#include "shm/layout.h"

namespace wslb::checker {

// Checker only. Applies one finished probe to `row` under the rise/fall rules: check_streak and
// healthy (CAS, retried if a worker marked the backend down meanwhile), last_result,
// last_check_ms = `finished_unix_ms`, last_error (only on failure: the text of the latest
// failure stays visible after a recovery), transitions += 1 on a flip, passive_fail_streak = 0
// when the backend comes up. Returns the flip, if any, for the log line.
std::optional<transition> record_check(shm::backend_row& row, probe_status status,
                                       std::string_view error, std::uint32_t rise,
                                       std::uint32_t fall, std::int64_t finished_unix_ms);

}  // namespace wslb::checker
