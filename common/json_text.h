// Writing a JSON string literal, the one way every JSON document of wslb does it (status,
// events, access log, runtime command answers).
#pragma once

#include <string>
#include <string_view>

namespace wslb {

// `s` as a quoted JSON string: quote and backslash escaped, control bytes and DEL as \u00XX.
// Well-formed UTF-8 passes as it is; a byte that is not part of a well-formed UTF-8 sequence
// is written as \u00XX (its value as a code point), so the result is always valid UTF-8 and
// valid JSON, whatever bytes `s` holds (the access log writes what clients sent).
std::string json_string(std::string_view s);

// The same, appended to `out` (no temporary string per field).
void append_json_string(std::string& out, std::string_view s);

}  // namespace wslb
