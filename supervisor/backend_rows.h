// Keeping the table's backend rows in step with the configuration. A backend keeps its row
// for as long as it is configured (found by address), so its live counts and health carry
// over a reload; a removed backend's row stays `removed` until its last connection closes.
#pragma once

#include <string>

#include "common/config.h"
#include "shm/layout.h"

namespace wslb::supervisor {

// Master only. Assigns each backend in `cfg` a row (its existing one when the address is
// already in the table), writes weight/address/sockaddr, marks rows no longer configured as
// `removed`. New rows start healthy (checks prove them down); so does a kept row whose name
// now resolves to another address. Sets `row` in cfg.backends.
// Returns false with `error` set when the table has no free row.
bool apply_backends(shm::table& t, config& cfg, std::string& error);

// Master only, periodically: frees `removed` rows whose live count has dropped to zero.
void release_drained_backends(shm::table& t);

// Master only: writes the health-check settings into the checker row.
void apply_check_settings(shm::table& t, const check_config& check);

}  // namespace wslb::supervisor
