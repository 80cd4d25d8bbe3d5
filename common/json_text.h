// Writing a JSON string literal, the one way every JSON document of wslb does it (status,
// events, access log, runtime command answers).
#pragma once

#include <string>
#include <string_view>

namespace wslb {

// `s` as a quoted JSON string: quote and backslash escaped, control bytes as \u00XX. Bytes of
// 0x80 and above pass as they are.
std::string json_string(std::string_view s);

}  // namespace wslb
