// The HTTP answers wslb writes itself (short plain-text errors before closing a client), and a
// small incremental reader for the start of what a backend answers (its status line and where
// its head ends). Used by the worker (errors to clients; in tcp mode, noticing that a relayed
// connection was upgraded to WebSocket) and by the health checker (http and websocket checks).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace wslb::protocol {

// The complete answer for `status`, one of 400, 408, 426, 431, 502, 503, 504: status line,
// Content-Type: text/plain, Content-Length, Connection: close (426 adds
// Sec-WebSocket-Version: 13) and a one-line body. The bytes are constant storage: no allocation,
// valid forever. Any other status gives an empty view. The worker writes it, then closes.
std::string_view error_response(int status);

// The 503 for a client that waited in vain for a place under the backends' maxconn: like
// error_response(503) plus `Retry-After: SECONDS`.
std::string busy_response(std::uint32_t retry_after_s);

// The reason phrase for the statuses above ("Bad Request"), or "" for others.
std::string_view reason_phrase(int status);

enum class sniff_status { need_more, complete, invalid };

struct sniff_result {
  sniff_status status = sniff_status::need_more;
  // complete: bytes of the last feed that belonged to the head (the rest is body or, after a
  // 101, WebSocket frames).
  std::size_t head_bytes_in_feed = 0;
};

// Follows the first bytes a backend sends: "HTTP/1.x NNN ..." up to the empty line that ends
// the head. Copies nothing and keeps a few bytes of state, so it can watch a relayed stream
// for free. `invalid` means the bytes are not an HTTP/1.x response head (raw TCP, another
// protocol) or the head is longer than `max_head`; the caller then stops looking.
class response_sniffer {
 public:
  explicit response_sniffer(std::size_t max_head = 16 * 1024) : max_head_(max_head) {}

  // Advances over the next bytes. After `complete` or `invalid` later calls return the same
  // result and look at nothing.
  sniff_result feed(const char* data, std::size_t len);

  // The status code once the status line has been read (complete or still reading headers),
  // else 0.
  int status_code() const { return code_digits_ == 3 ? code_ : 0; }
  // True when the head is complete and answered 101 Switching Protocols.
  bool switched_protocols() const { return result_.status == sniff_status::complete && code_ == 101; }

 private:
  std::size_t max_head_;
  std::size_t seen_ = 0;         // head bytes so far
  std::uint16_t code_ = 0;
  std::uint8_t code_digits_ = 0;
  std::uint8_t line_chars_ = 0;  // non-CR bytes on the current line, saturating
  sniff_result result_;
};

// The value of header `name` (case-insensitive, whitespace trimmed) in a complete response head
// held by the caller (the checker buffers its probe's answer), or nullopt.
std::optional<std::string_view> response_header(std::string_view head, std::string_view name);

}  // namespace wslb::protocol
