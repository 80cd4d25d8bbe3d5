// Passive health: real traffic's connect failures mark a backend down at once, without waiting
// for the health checker's next round. Pure functions on a backend's table row, called by a
// worker after each connect attempt.
//
// The rule: every worker adds its failed connects (refused, reset, timed out) to the row's
// shared `passive_fail_streak`; any successful connect resets it to 0. The worker whose failure
// brings the streak to `fall` while the backend is up marks it down (healthy 1 -> 0, one
// compare-and-swap, so exactly one worker does it and logs it). The health checker's active
// checks bring it back up after `rise` good probes; workers never mark a backend up.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "shm/layout.h"

namespace wslb::worker {

// Records a failed connect to `row`. Returns true when this call marked the backend down; then
// `reason_out` holds the text written to the row's last error
// ("passive: 3 connect failures in a row (last: connection refused)").
bool note_connect_failure(shm::backend_row& row, std::uint32_t fall, std::string_view reason,
                          std::string& reason_out);

// Records a successful connect to `row`: the failure streak starts again from zero.
void note_connect_success(shm::backend_row& row);

}  // namespace wslb::worker
