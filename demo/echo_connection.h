// What the demo echo backend does with one connection, as a pure state machine: bytes in,
// bytes out. The first bytes decide the connection's kind: an HTTP request with
// "Upgrade: websocket" (101, then frames echoed), another HTTP request (a JSON description of
// the request), or anything else (raw TCP echo). Used by the echo server's event loop, one
// object per accepted connection, in whichever process runs run_echo_server.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <sys/socket.h>

#include "protocol/http_request.h"
#include "protocol/websocket.h"

namespace wslb::demo {

// What every connection of one server shares (lives as long as the server).
struct echo_settings {
  std::string id;              // reported in answers
  int http_status = 200;       // status of plain HTTP answers
  bool expect_proxy = false;   // a PROXY v1/v2 header precedes each connection's bytes
};

enum class echo_kind : std::uint8_t { detecting, http, websocket, raw, closed };

enum class feed_result : std::uint8_t {
  keep_open,          // keep reading
  close_after_flush,  // write what was produced, then close the connection
};

class echo_connection {
 public:
  explicit echo_connection(const echo_settings& settings) : settings_(&settings) {}

  // Consumes `len` bytes the peer sent and appends the answer to `out`. Never holds more than
  // one request head, one partial frame header or one control frame between calls; payload
  // bytes are streamed straight through.
  feed_result feed(const std::uint8_t* data, std::size_t len, std::string& out);

  // The peer closed its side. Appends anything owed (a raw connection whose first bytes were
  // still being sniffed is echoed) and says what to do.
  feed_result peer_closed(std::string& out);

  echo_kind kind() const { return kind_; }

  // Largest request head waited for before answering 431.
  static constexpr std::size_t max_head = 64 * 1024;

 private:
  feed_result detect(std::string& out);
  feed_result serve_http(const std::uint8_t* data, std::size_t len, std::string& out);
  feed_result feed_frames(const std::uint8_t* data, std::size_t len, std::string& out);
  feed_result finish_frame(std::string& out);
  feed_result fail_websocket(std::uint16_t code, std::string& out);
  void answer_http(int status, std::string_view body, bool keep_alive, bool head_only,
                   std::string& out);
  void add_whoami(std::string& out) const;
  bool strip_proxy_header(feed_result& result);

  const echo_settings* settings_;
  echo_kind kind_ = echo_kind::detecting;
  // Bytes kept across calls: the first bytes while the kind is being decided, a partial frame
  // header, or a control frame's payload. Empty (and unallocated) while a connection is idle.
  std::string held_;
  // The request head being read (plain HTTP or the upgrade); only while one is incomplete.
  std::unique_ptr<protocol::request_head_parser> head_;
  // JSON kept for "whoami" after a WebSocket handshake: the request headers and PROXY data.
  std::string headers_json_;
  std::string proxy_json_ = "null";
  std::uint64_t body_left_ = 0;  // plain HTTP: request body bytes still to skip
  bool proxy_seen_ = false;      // the PROXY header (when expected) has been stripped

  // WebSocket frame being received.
  bool in_frame_ = false;
  bool gather_ = false;  // whole payload wanted (control frames, a possible "whoami")
  protocol::frame_header frame_{};
  std::uint64_t payload_left_ = 0;
  std::size_t mask_offset_ = 0;
};

// "ip:port" ("[v6]:port") of an IPv4 or IPv6 socket address; empty for another family.
std::string address_text(const sockaddr_storage& addr);

// True when `data` could be the start of a request line: an upper-case method token then a
// space. `maybe` is set while too few bytes have arrived to tell.
bool looks_like_request_line(std::string_view data, bool& maybe);

// Appends `s` as a JSON string literal (with quotes) to `out`.
void append_json_string(std::string& out, std::string_view s);

}  // namespace wslb::demo
