// Reading the start of an HTTP/1.x response, just enough for a health check: the status code
// and one header's value. Pure functions over the bytes received so far.
#pragma once

#include <optional>
#include <string_view>

namespace wslb::checker {

// Status code of a complete status line at the start of `head` ("HTTP/1.1 200 OK\r\n").
// Returns 0 when the line is not complete yet, -1 when it is complete but not a status line.
int response_status(std::string_view head);

// Offset just past the blank line that ends the head ("\r\n\r\n"), or 0 while incomplete.
std::size_t head_end(std::string_view head);

// Value of header `name` (case-insensitive) in a complete head, surrounding blanks trimmed.
std::optional<std::string_view> header_value(std::string_view head, std::string_view name);

}  // namespace wslb::checker
