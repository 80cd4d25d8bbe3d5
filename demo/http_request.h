// A small HTTP/1.x request-head parser for the demo echo backend: enough to tell a WebSocket
// upgrade from a plain request and to report the headers back. Pure; called per connection
// by the echo server (any process that runs run_echo_server).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace wslb::demo {

struct http_header {
  std::string_view name;
  std::string_view value;  // without surrounding blanks
};

// Views into the bytes given to parse_request_head: valid while those bytes are.
struct http_request_head {
  std::string_view method;
  std::string_view target;
  int minor_version = 1;  // HTTP/1.<minor_version>
  std::vector<http_header> headers;
  std::size_t head_len = 0;  // bytes up to and including the blank line

  // The first header named `name` (case-insensitive); empty when absent.
  std::string_view header(std::string_view name) const;
  bool has_header(std::string_view name) const;
  // True when the request asks to upgrade to WebSocket (Upgrade: websocket, any case).
  bool is_websocket_upgrade() const;
  // Whether the connection stays open after the answer (HTTP/1.1 default, Connection header).
  bool keep_alive() const;
};

enum class head_status { complete, incomplete, bad };

// Parses the request head at the start of `data`. `incomplete` until the blank line arrives
// (the caller decides how much it is willing to wait for); `bad` on a malformed line.
head_status parse_request_head(std::string_view data, http_request_head& out);

// True when `data` could be the start of a request line ("GET ", "OPTIONS "...): an upper-case
// method token then a space. `maybe` is set while too few bytes have arrived to tell.
bool looks_like_request_line(std::string_view data, bool& maybe);

// True when the comma-separated header value `value` contains `token` (case-insensitive).
bool header_has_token(std::string_view value, std::string_view token);

bool iequals(std::string_view a, std::string_view b);

}  // namespace wslb::demo
