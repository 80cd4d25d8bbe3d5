// `--user USER[:GROUP]`: whom the master becomes once its sockets are bound.
#pragma once

#include <string>

#include "common/config.h"

namespace wslb {

// Resolves "USER" or "USER:GROUP" (names or numeric ids) through the system's user database
// into `out`. Returns false with `error` ("no user 'x'"). Pure apart from that lookup.
bool parse_run_as(const std::string& text, run_as_config& out, std::string& error);

}  // namespace wslb
