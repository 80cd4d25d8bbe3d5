// One line of the access log, as JSON: the fields and how they are written. Pure (no libuv,
// no session), so the unit tests check the exact text.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace wslb::worker {

// What one line says. Empty texts and zero numbers are written as null.
struct access_line {
  std::int64_t time_ms = 0;         // wall clock when the request or connection finished
  std::string_view client;          // the peer: "203.0.113.5:41234", "[::1]:41234"
  std::string_view forwarded_for;   // X-Forwarded-For a trusted proxy sent, as it sent it
  std::string_view backend;         // "HOST:PORT" as configured; empty: none was chosen
  std::string_view kind;            // "http", "websocket", "tcp"
  std::string_view method;          // the request line's parts (http mode), as sent
  std::string_view path;
  std::string_view host;            // the Host header, as sent
  std::string_view user_agent;
  std::uint16_t status = 0;         // HTTP status relayed or answered
  std::uint64_t duration_us = 0;
  std::uint64_t bytes_in = 0;       // read from the client
  std::uint64_t bytes_out = 0;      // written to the client
  std::string_view close_cause;     // why the connection ended; empty: it stays open
  std::uint16_t ws_close_code = 0;  // the WebSocket close frame's code
  std::size_t worker = 0;           // the worker slot that served it
};

// Appends `line` as one JSON object on one line (no newline). Every text is escaped with
// append_json_string, so nothing a client sent can end the line or add a field.
void render_access_line(const access_line& line, std::string& out);

}  // namespace wslb::worker
