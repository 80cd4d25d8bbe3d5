// Parsing the `--cluster` value: redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]. Pure.
#pragma once

#include <string>
#include <string_view>

#include "common/config.h"

namespace wslb {

// Fills `out` from `text`, or returns false with what is wrong in `error` (the caller names the
// flag). HOST is a name, an IPv4 address or a bracketed IPv6 address; PORT 1-65535 (6379 when
// left out); DB 0-15 as Redis numbers its databases by default. A password may hold any byte
// but '@' is taken as the end of the credentials at its last occurrence.
bool parse_redis_url(std::string_view text, redis_target& out, std::string& error);

}  // namespace wslb
