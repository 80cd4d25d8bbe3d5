// The live dashboard the admin listener serves at `/`: one self-contained HTML page (its style
// and script inline, nothing fetched from elsewhere) that polls `/status`, `/events` and
// `/metrics` of the same listener every second.
#pragma once

#include <string_view>

namespace wslb::supervisor {

// The page, the same bytes on every request.
std::string_view dashboard_page();

}  // namespace wslb::supervisor
