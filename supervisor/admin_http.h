// The admin listener's HTTP/1.1, reduced to what it serves: one GET per connection, a bounded
// request head, a bearer token, and an answer with a body and `Connection: close`. Pure
// functions on strings, so the unit tests drive them without sockets.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace wslb::supervisor {

// The largest request head the admin listener reads; a longer one is answered 431.
inline constexpr std::size_t max_admin_head_bytes = 8 * 1024;

struct admin_request {
  std::string method;
  std::string path;           // the target without its query: "/metrics"
  std::string query;          // what follows '?', may be empty
  std::string authorization;  // the Authorization header's value, as sent
  std::string accept;         // the Accept header's value, as sent
};

struct admin_response {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::string extra_headers;  // complete "Name: value\r\n" lines
};

// Whether `received` holds a complete request head (up to and including the blank line).
// Returns the head's length, or nullopt while it is incomplete.
std::optional<std::size_t> admin_head_length(std::string_view received);

// Parses a complete request head. Returns nullopt when the request line or a header line is
// malformed (the caller answers 400).
std::optional<admin_request> parse_admin_request(std::string_view head);

// True when no token is configured, or when the request carries it as
// `Authorization: Bearer TOKEN` or as the query parameter `token=TOKEN` (how the dashboard's
// first page load, typed into a browser, carries it). Compares in constant time.
bool admin_authorized(const admin_request& request, std::string_view token);

// The value of query parameter `key` in `query` ("a=1&token=x"), percent-decoded; empty when
// absent.
std::string query_parameter(std::string_view query, std::string_view key);

// The bytes of a complete answer: status line, Content-Type, Content-Length, no caching,
// `Connection: close`, the extra headers, then the body.
std::string render_admin_response(const admin_response& response);

// A plain-text answer with `status` and a one-line body.
admin_response plain_admin_response(int status, std::string body);

}  // namespace wslb::supervisor
