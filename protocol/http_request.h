// The client's HTTP/1.1 requests, read incrementally in http mode, one after another on a
// kept-alive connection. Built on Debian's http-parser (nodejs/http-parser 2.9). For each
// request the worker feeds the head until `complete` or `error`, builds the head it forwards
// (forwarding headers and hop-by-hop hygiene, see write_forwarded_head), then follows the body
// (Content-Length or chunked, never guessed: a request with neither has none) with start_body /
// feed_body, relaying it untouched, and reset()s the parser for the next request.
#pragma once

#include <http_parser.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace wslb::protocol {

enum class head_status { need_more, complete, error };

struct head_feed_result {
  head_status status = head_status::need_more;
  // complete: how many bytes of the last feed belonged to the head. The bytes after them (early
  // body, or WebSocket frames sent right behind the handshake) are not kept here: the worker
  // must forward them to the backend after the head.
  std::size_t head_bytes_in_feed = 0;
  // error: the HTTP status to answer with (see http_response.h): 400, 426 or 431.
  int http_status = 0;
};

// What write_forwarded_head adds. `client_ip` is the textual client address without port
// (format_ip in proxy_protocol.h writes it).
struct forwarding {
  bool add_headers = true;  // --forward-headers
  std::string_view client_ip;
  // The peer is one of --trusted-proxies: its forwarding headers are kept and appended to
  // instead of replaced.
  bool trusted_peer = false;
  // The client came over TLS: X-Forwarded-Proto and Forwarded's proto say "https".
  bool https = false;
};

// Where a request body ends (feed_body).
struct body_feed_result {
  std::size_t consumed = 0;  // bytes of the feed that belong to the body
  bool done = false;         // the request ends with them
  bool error = false;        // malformed chunked framing: the connection cannot go on
};

// Parses one request head. Memory is bounded: at most `max_header_size` bytes of head are ever
// kept (a head longer than that is answered 431), plus one small record per header line.
class request_head_parser {
 public:
  explicit request_head_parser(std::size_t max_header_size);
  request_head_parser(const request_head_parser&) = delete;
  request_head_parser& operator=(const request_head_parser&) = delete;

  // Feeds the next bytes the client sent. Once `complete` or `error` has been returned, later
  // calls return the same result again and look at no bytes. Never throws for bad input.
  //
  // Errors: malformed request line or headers, an HTTP version other than 1.x, an HTTP/1.1
  // request without exactly one Host, a folded (obs-fold) header line, CONNECT, both
  // Content-Length and Transfer-Encoding, a Transfer-Encoding whose last coding is not chunked,
  // a WebSocket upgrade with a body -> 400; a head longer than
  // max_header_size -> 431. A WebSocket upgrade (an Upgrade header naming "websocket") must be a
  // GET over HTTP/1.1 with exactly one valid Sec-WebSocket-Key (-> 400 otherwise) and
  // Sec-WebSocket-Version: 13 (-> 426 otherwise, answered with Sec-WebSocket-Version: 13;
  // the version is checked before the key so that old clients learn which version to speak).
  head_feed_result feed(const char* data, std::size_t len);

  bool complete() const { return state_ == state::complete; }
  // True once any byte of this request has been fed (a keep-alive connection that goes quiet
  // before its next request is closed, one that stops mid-head is answered 408).
  bool started() const { return !head_.empty(); }

  // After complete(): starts following the body. Returns true when the request has none (it
  // ends with its head), false when feed_body must see it.
  bool start_body();
  // Advances over the next client bytes of the body, without copying them; stops where the
  // request ends (whatever follows is the next request).
  body_feed_result feed_body(const char* data, std::size_t len);

  // Ready for the next request of the connection (keeps the buffers' capacity).
  void reset();
  // The head's bytes as received (request line through the empty line). Valid when complete.
  std::string_view head() const { return {head_.data(), head_len_}; }

  // The accessors below are meaningful once complete() is true.
  std::string_view method() const;
  std::string_view target() const;  // request-target as sent: "/chat?sid=1"
  unsigned http_major() const { return parser_.http_major; }
  unsigned http_minor() const { return parser_.http_minor; }
  bool is_websocket_upgrade() const { return websocket_; }
  bool is_head_method() const { return parser_.method == HTTP_HEAD; }
  // True when the client wants the connection kept open after this request
  // (http_should_keep_alive: HTTP/1.1 without "Connection: close", or 1.0 with keep-alive).
  bool keep_alive() const { return keep_alive_; }

  std::size_t header_count() const { return headers_.size(); }
  std::string_view header_name(std::size_t i) const;
  std::string_view header_value(std::size_t i) const;  // optional whitespace trimmed
  // The first header named `name` (case-insensitive), or nullopt.
  std::optional<std::string_view> header(std::string_view name) const;

  // Sticky-balancing keys (see --balance). Values are raw, as sent (no percent-decoding), so a
  // client that sends the same bytes always gets the same key.
  // The value of cookie `name` (case-sensitive, as cookie names are) in any Cookie header;
  // surrounding double quotes are removed.
  std::optional<std::string_view> cookie(std::string_view name) const;
  // The value of query parameter `name` in the request-target ("a" in "/p?sid=a&x=1"); an
  // empty value for "?sid" or "?sid=".
  std::optional<std::string_view> query_param(std::string_view name) const;

  // The head to send to the backend, rebuilt from what was parsed ("METHOD target HTTP/1.x",
  // then "Name: value" lines in order, CRLF line ends) so the backend reads exactly what we
  // validated. Hop-by-hop hygiene: Connection, Keep-Alive, Proxy-Connection, TE, Upgrade and
  // every header Connection names are dropped (never Host, Content-Length or Transfer-Encoding,
  // which frame the request); then one Connection of ours: "Upgrade" (with the client's Upgrade)
  // for a WebSocket upgrade, "close" when the client does not keep the connection alive,
  // "keep-alive" for an HTTP/1.0 client that does. With f.add_headers, forwarding headers
  // (matched with '_' taken as '-' and any case, so X_Forwarded_For is one too):
  //   from a trusted peer: X-Forwarded-For and Forwarded chains are kept and appended to
  //     ("<chain>, <client_ip>", "<chain>, for=<client_ip>;proto=http" or "https"), a single
  //     X-Forwarded-Proto, X-Real-IP, X-Forwarded-Host and X-Forwarded-Port are kept;
  //   from anyone else: all of them are dropped, including the '_' spellings;
  //   then X-Forwarded-For, Forwarded, X-Forwarded-Proto ("http", or "https" over TLS, unless
  //   kept) and X-Real-IP (<client_ip> unless kept) are written by us. Spellings with '_' are always dropped.
  // forwarded_head_size gives the exact size; write_forwarded_head writes into `out` and returns
  // the bytes written, or 0 when `cap` is too small. Called by the worker once per request.
  std::size_t forwarded_head_size(const forwarding& f) const;
  std::size_t write_forwarded_head(char* out, std::size_t cap, const forwarding& f) const;
  std::string forwarded_head(const forwarding& f) const;

 private:
  struct span {
    std::uint32_t off = 0;
    std::uint32_t len = 0;
  };
  // What a request header is to validate() and to the head wslb forwards, decided once per
  // head by validate().
  enum class header_role : std::uint8_t {
    end_to_end,         // passed on as it is
    host,               // framing (never dropped), counted by validate()
    transfer_encoding,  // framing
    framing,            // Content-Length
    connection,         // hop-by-hop; names more hop-by-hop headers
    hop_by_hop,         // Keep-Alive, Proxy-Connection, TE, and whatever Connection names
    upgrade,            // Upgrade: passed on for a WebSocket upgrade only
    xff,                // X-Forwarded-For
    forwarded,          // Forwarded (RFC 7239)
    xf_proto,           // X-Forwarded-Proto
    real_ip,            // X-Real-IP
    xf_other,           // X-Forwarded-Host, X-Forwarded-Port
    look_alike,         // a forwarding header spelt with '_' (X_Forwarded_For)
  };
  struct header_line {
    span name;
    span value;
    header_role role = header_role::end_to_end;
  };
  enum class state : std::uint8_t { reading, complete, error };

  static const http_parser_settings& settings();
  static int on_url(http_parser* p, const char* at, std::size_t len);
  static int on_header_field(http_parser* p, const char* at, std::size_t len);
  static int on_header_value(http_parser* p, const char* at, std::size_t len);
  static int on_headers_complete(http_parser* p);
  static int on_message_complete(http_parser* p);

  std::string_view view(span s) const { return {head_.data() + s.off, s.len}; }
  void extend(span& s, const char* at, std::size_t len) const;
  head_feed_result fail(int status);
  // 0 when the completed head is acceptable, else the status; sets websocket_ and, when 0,
  // every header's role.
  int validate();
  static header_role role_of(std::string_view name);
  void mark_named_by_connection();
  template <typename Sink>
  void emit_forwarded(Sink& sink, const forwarding& f) const;

  http_parser parser_{};
  std::string head_;
  std::vector<header_line> headers_;
  span url_;
  std::size_t max_header_size_;
  std::size_t head_len_ = 0;
  head_feed_result result_;
  state state_ = state::reading;
  bool last_was_value_ = true;  // the next on_header_field starts a new header line
  bool headers_done_ = false;
  bool message_done_ = false;
  bool folded_ = false;
  bool websocket_ = false;
  bool keep_alive_ = false;
};

// http-parser refuses heads over a process-wide limit (80 KiB as Debian builds it) on its
// own; this raises that limit to at least `max_header_size`, so that --max-header-size (up to
// 1 MiB) is what decides, never a silent cap below it. Called once per process (the worker at
// start), before any parser runs; it also bounds the response heads response_reader accepts.
void allow_header_size(std::uint32_t max_header_size);

// True when `list` (a comma-separated header value such as Connection or Upgrade) contains
// `token`, compared case-insensitively.
bool header_has_token(std::string_view list, std::string_view token);

// Case-insensitive ASCII comparison (header names).
bool iequals(std::string_view a, std::string_view b);

// `s` without leading and trailing spaces and tabs (HTTP's optional whitespace).
std::string_view trim(std::string_view s);

}  // namespace wslb::protocol
