#include "protocol/http_request.h"

#include <algorithm>
#include <charconv>
#include <climits>
#include <cstring>

#include "protocol/websocket.h"

namespace wslb::protocol {

namespace {

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// Splits `s` at the first `sep`: returns the part before it and leaves the rest in `s`.
std::string_view next_piece(std::string_view& s, char sep) {
  const std::size_t at = s.find(sep);
  std::string_view piece = s.substr(0, at);
  s = at == std::string_view::npos ? std::string_view{} : s.substr(at + 1);
  return piece;
}


struct size_sink {
  std::size_t n = 0;
  void put(std::string_view s) { n += s.size(); }
};

// Writes into [p, end); once a piece does not fit it writes nothing more and `ok` turns false.
struct write_sink {
  char* p;
  char* end;
  bool ok = true;
  void put(std::string_view s) {
    if (!ok || s.size() > static_cast<std::size_t>(end - p)) {
      ok = false;
      return;
    }
    std::memcpy(p, s.data(), s.size());
    p += s.size();
  }
};

// Case-insensitive, with '_' taken as '-': many frameworks (CGI, WSGI, PHP, Rack) turn both
// spellings into the same variable, so a client's X_Real_IP would pass for ours.
bool loose_equals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const char x = a[i] == '_' ? '-' : lower(a[i]);
    const char y = b[i] == '_' ? '-' : lower(b[i]);
    if (x != y) return false;
  }
  return true;
}

// RFC 9110 5.1: a field name is a token.
bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (const char c : s) {
    const bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (!alnum && std::string_view("!#$%&'*+-.^_`|~").find(c) == std::string_view::npos) {
      return false;
    }
  }
  return true;
}

// RFC 9110 5.5: a field value is visible characters, obs-text, spaces and tabs. http-parser
// 2.9 does not look at the first character of a value, so a control byte there would reach the
// backend unless we refuse it here (the fuzzer found this).
bool is_field_value(std::string_view s) {
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && u != '\t') || u == 0x7F) return false;
  }
  return true;
}

// RFC 9112 3.2: a request-target has no whitespace or control bytes; http-parser (not built
// strict) lets tabs and form feeds through.
bool is_target(std::string_view s) {
  if (s.empty()) return false;
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7F) return false;
  }
  return true;
}

}  // namespace

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

void allow_header_size(std::uint32_t max_header_size) {
  // HTTP_MAX_HEADER_SIZE, http-parser's built-in default.
  constexpr std::uint32_t parser_default = 80 * 1024;
  http_parser_set_max_header_size(std::max(max_header_size + 1024, parser_default));
}

bool header_has_token(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    if (iequals(trim(next_piece(list, ',')), token)) return true;
  }
  return false;
}

request_head_parser::request_head_parser(std::size_t max_header_size)
    : max_header_size_(max_header_size) {
  http_parser_init(&parser_, HTTP_REQUEST);
  parser_.data = this;
}

void request_head_parser::extend(span& s, const char* at, std::size_t len) const {
  s.len = static_cast<std::uint32_t>(static_cast<std::size_t>(at - head_.data()) + len - s.off);
}

int request_head_parser::on_url(http_parser* p, const char* at, std::size_t len) {
  auto* self = static_cast<request_head_parser*>(p->data);
  // http-parser hands a token over in pieces when it spans two feeds; the pieces are adjacent
  // in head_, so a span that grows to the end of the newest piece covers the whole token.
  if (self->url_.len == 0) self->url_.off = static_cast<std::uint32_t>(at - self->head_.data());
  self->extend(self->url_, at, len);
  return 0;
}

int request_head_parser::on_header_field(http_parser* p, const char* at, std::size_t len) {
  auto* self = static_cast<request_head_parser*>(p->data);
  if (self->headers_done_) return 0;  // a chunked body's trailer: relayed, not ours to read
  if (self->last_was_value_) {
    header_line h;
    h.name.off = static_cast<std::uint32_t>(at - self->head_.data());
    h.value.off = h.name.off;  // until a value arrives, an empty span
    self->headers_.push_back(h);
    self->last_was_value_ = false;
  }
  self->extend(self->headers_.back().name, at, len);
  return 0;
}

int request_head_parser::on_header_value(http_parser* p, const char* at, std::size_t len) {
  auto* self = static_cast<request_head_parser*>(p->data);
  if (self->headers_done_ || self->headers_.empty()) return 0;
  span& v = self->headers_.back().value;
  const auto off = static_cast<std::uint32_t>(at - self->head_.data());
  if (!self->last_was_value_) {
    v.off = off;
    self->last_was_value_ = true;
  } else if (off != v.off + v.len) {
    // A value continued on the next line (obs-fold): RFC 9112 lets a server reject it, and
    // passing it on would let the backend read the header differently from us.
    self->folded_ = true;
  }
  self->extend(v, at, len);
  return 0;
}

int request_head_parser::on_headers_complete(http_parser* p) {
  auto* self = static_cast<request_head_parser*>(p->data);
  self->headers_done_ = true;
  self->keep_alive_ = http_should_keep_alive(p) != 0;
  // Stop before the body: whatever follows the head is the backend's to read, not ours.
  http_parser_pause(p, 1);
  return 0;
}

int request_head_parser::on_message_complete(http_parser* p) {
  auto* self = static_cast<request_head_parser*>(p->data);
  self->message_done_ = true;
  // Stop where the request ends: what follows is the next request, read only after this
  // request's response (requests are answered one at a time, in order).
  http_parser_pause(p, 1);
  return 0;
}

head_feed_result request_head_parser::fail(int status) {
  state_ = state::error;
  result_ = head_feed_result{head_status::error, 0, status};
  return result_;
}

const http_parser_settings& request_head_parser::settings() {
  static const http_parser_settings s = [] {
    http_parser_settings init;
    http_parser_settings_init(&init);
    init.on_url = &request_head_parser::on_url;
    init.on_header_field = &request_head_parser::on_header_field;
    init.on_header_value = &request_head_parser::on_header_value;
    init.on_headers_complete = &request_head_parser::on_headers_complete;
    init.on_message_complete = &request_head_parser::on_message_complete;
    return init;
  }();
  return s;
}

head_feed_result request_head_parser::feed(const char* data, std::size_t len) {
  if (state_ != state::reading || len == 0) return result_;  // execute(len 0) would mean EOF
  const std::size_t start = head_.size();
  const std::size_t take = std::min(len, max_header_size_ - start);
  if (take == 0) return fail(431);
  head_.append(data, take);
  const std::size_t parsed = http_parser_execute(&parser_, &settings(), head_.data() + start, take);
  const auto err = HTTP_PARSER_ERRNO(&parser_);
  if (headers_done_) {
    // Paused in on_headers_complete, http-parser stops on the head's final LF without counting
    // it, so the head ends one byte after `parsed`.
    const std::size_t end = start + parsed + 1;
    if (err != HPE_PAUSED || end > head_.size() || head_[end - 1] != '\n') return fail(400);
    head_len_ = end;
    head_.resize(end);
    if (const int status = validate(); status != 0) return fail(status);
    state_ = state::complete;
    result_ = head_feed_result{head_status::complete, end - start, 0};
    return result_;
  }
  if (err == HPE_HEADER_OVERFLOW) return fail(431);
  if (err != HPE_OK) return fail(400);
  if (head_.size() >= max_header_size_) return fail(431);
  return result_;
}

request_head_parser::header_role request_head_parser::role_of(std::string_view name) {
  static constexpr std::pair<std::string_view, header_role> known[] = {
      {"host", header_role::host},
      {"content-length", header_role::framing},
      {"transfer-encoding", header_role::transfer_encoding},
      {"connection", header_role::connection},
      {"keep-alive", header_role::hop_by_hop},
      {"proxy-connection", header_role::hop_by_hop},
      {"te", header_role::hop_by_hop},
      {"upgrade", header_role::upgrade},
  };
  static constexpr std::pair<std::string_view, header_role> forwarding_names[] = {
      {"x-forwarded-for", header_role::xff},
      {"forwarded", header_role::forwarded},
      {"x-forwarded-proto", header_role::xf_proto},
      {"x-real-ip", header_role::real_ip},
      {"x-forwarded-host", header_role::xf_other},
      {"x-forwarded-port", header_role::xf_other},
  };
  for (const auto& [known_name, role] : known) {
    if (iequals(name, known_name)) return role;
  }
  for (const auto& [known_name, role] : forwarding_names) {
    if (!loose_equals(name, known_name)) continue;
    return name.find('_') == std::string_view::npos ? role : header_role::look_alike;
  }
  return header_role::end_to_end;
}

int request_head_parser::validate() {
  if (folded_ || parser_.http_major != 1 || !is_target(target())) return 400;
  std::size_t hosts = 0;
  std::size_t keys = 0;
  std::size_t versions = 0;
  bool transfer_encoding = false;
  bool connection = false;
  std::string_view key;
  std::string_view version;
  for (std::size_t i = 0; i < headers_.size(); ++i) {
    const std::string_view name = header_name(i);
    const std::string_view value = header_value(i);
    if (!is_token(name) || !is_field_value(value)) return 400;
    headers_[i].role = role_of(name);
    switch (headers_[i].role) {
      case header_role::host: ++hosts; break;
      case header_role::transfer_encoding: transfer_encoding = true; break;
      case header_role::connection: connection = true; break;
      case header_role::upgrade:
        if (header_has_token(value, "websocket")) websocket_ = true;
        break;
      case header_role::end_to_end:
        if (iequals(name, "Sec-WebSocket-Key")) {
          ++keys;
          key = value;
        } else if (iequals(name, "Sec-WebSocket-Version")) {
          ++versions;
          version = value;
        }
        break;
      default: break;
    }
  }
  // RFC 9112 3.2: a server must answer 400 to an HTTP/1.1 request without exactly one Host.
  if (hosts > 1 || (parser_.http_minor >= 1 && hosts == 0)) return 400;
  // A tunnel request is not ours to open; the bytes after it would not be HTTP.
  if (parser_.method == HTTP_CONNECT) return 400;
  // RFC 9112 6.1/6.3: a request body is delimited by chunked (the final coding) or by
  // Content-Length, never both; anything else cannot be delimited and must be refused.
  // (http-parser already refuses both together and conflicting Content-Lengths.)
  const bool chunked = (parser_.flags & F_CHUNKED) != 0;
  if (transfer_encoding && !chunked) return 400;
  const bool has_body =
      chunked || (parser_.content_length > 0 && parser_.content_length != ULLONG_MAX);
  if (websocket_) {
    if (has_body) return 400;  // nothing may travel between an upgrade request and its answer
    if (parser_.method != HTTP_GET || parser_.http_minor < 1) return 400;
    if (versions != 1 || version != "13") return 426;
    if (keys != 1 || !valid_websocket_key(key)) return 400;
  }
  if (connection) mark_named_by_connection();
  return 0;
}

void request_head_parser::mark_named_by_connection() {
  // RFC 9110 7.6.1: the headers Connection names are hop-by-hop too. Framing and forwarding
  // headers keep their own rules.
  for (const header_line& c : headers_) {
    if (c.role != header_role::connection) continue;
    std::string_view list = trim(view(c.value));
    while (!list.empty()) {
      const std::string_view token = trim(next_piece(list, ','));
      for (header_line& h : headers_) {
        if (h.role == header_role::end_to_end && iequals(view(h.name), token)) {
          h.role = header_role::hop_by_hop;
        }
      }
    }
  }
}

bool request_head_parser::start_body() {
  // The parser was paused on the head's final LF without consuming it (see feed): hand it that
  // byte again so that it chooses how the body is delimited.
  http_parser_pause(&parser_, 0);
  http_parser_execute(&parser_, &settings(), "\n", 1);
  return message_done_;
}

body_feed_result request_head_parser::feed_body(const char* data, std::size_t len) {
  body_feed_result r;
  if (message_done_) {
    r.done = true;
    return r;
  }
  if (len == 0) return r;  // execute(len 0) would mean EOF
  r.consumed = http_parser_execute(&parser_, &settings(), data, len);
  const auto err = HTTP_PARSER_ERRNO(&parser_);
  r.done = message_done_;
  r.error = !message_done_ && err != HPE_OK;
  return r;
}

void request_head_parser::reset() {
  http_parser_init(&parser_, HTTP_REQUEST);
  parser_.data = this;
  head_.clear();
  headers_.clear();
  url_ = span{};
  head_len_ = 0;
  result_ = head_feed_result{};
  state_ = state::reading;
  last_was_value_ = true;
  headers_done_ = false;
  message_done_ = false;
  folded_ = false;
  websocket_ = false;
  keep_alive_ = false;
}

std::string_view request_head_parser::method() const {
  return http_method_str(static_cast<http_method>(parser_.method));
}

std::string_view request_head_parser::target() const { return view(url_); }

std::string_view request_head_parser::header_name(std::size_t i) const {
  return view(headers_[i].name);
}

std::string_view request_head_parser::header_value(std::size_t i) const {
  return trim(view(headers_[i].value));
}

std::optional<std::string_view> request_head_parser::header(std::string_view name) const {
  for (std::size_t i = 0; i < headers_.size(); ++i) {
    if (iequals(header_name(i), name)) return header_value(i);
  }
  return std::nullopt;
}

std::optional<std::string_view> request_head_parser::cookie(std::string_view name) const {
  for (std::size_t i = 0; i < headers_.size(); ++i) {
    if (!iequals(header_name(i), "Cookie")) continue;
    std::string_view rest = header_value(i);
    while (!rest.empty()) {
      std::string_view pair = trim(next_piece(rest, ';'));
      const std::size_t eq = pair.find('=');
      if (eq == std::string_view::npos || trim(pair.substr(0, eq)) != name) continue;
      std::string_view value = trim(pair.substr(eq + 1));
      if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
        value = value.substr(1, value.size() - 2);
      }
      return value;
    }
  }
  return std::nullopt;
}

std::optional<std::string_view> request_head_parser::query_param(std::string_view name) const {
  std::string_view t = target();
  const std::size_t q = t.find('?');
  if (q == std::string_view::npos) return std::nullopt;
  std::string_view query = t.substr(q + 1);
  query = query.substr(0, query.find('#'));
  while (!query.empty()) {
    std::string_view pair = next_piece(query, '&');
    const std::size_t eq = pair.find('=');
    if (pair.substr(0, eq) != name) continue;
    return eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
  }
  return std::nullopt;
}

template <typename Sink>
void request_head_parser::emit_forwarded(Sink& sink, const forwarding& f) const {
  char version[16] = "HTTP/";
  char* end = std::to_chars(version + 5, version + sizeof version, parser_.http_major).ptr;
  *end++ = '.';
  end = std::to_chars(end, version + sizeof version, parser_.http_minor).ptr;
  sink.put(method());
  sink.put(" ");
  sink.put(target());
  sink.put(" ");
  sink.put(std::string_view(version, static_cast<std::size_t>(end - version)));
  sink.put("\r\n");
  const bool trusted = f.add_headers && f.trusted_peer;
  bool kept_proto = false;
  bool kept_real_ip = false;
  for (std::size_t i = 0; i < headers_.size(); ++i) {
    bool keep = true;
    switch (headers_[i].role) {
      case header_role::end_to_end:
      case header_role::host:
      case header_role::transfer_encoding:
      case header_role::framing: break;
      case header_role::connection:
      case header_role::hop_by_hop: keep = false; break;
      case header_role::upgrade: keep = websocket_; break;
      case header_role::xff:
      case header_role::forwarded: keep = !f.add_headers; break;  // chains: written below
      case header_role::xf_proto:
        keep = !f.add_headers || (trusted && !kept_proto);
        kept_proto = kept_proto || keep;
        break;
      case header_role::real_ip:
        keep = !f.add_headers || (trusted && !kept_real_ip);
        kept_real_ip = kept_real_ip || keep;
        break;
      case header_role::xf_other: keep = !f.add_headers || trusted; break;
      case header_role::look_alike: keep = !f.add_headers; break;
    }
    if (!keep) continue;
    sink.put(header_name(i));
    sink.put(": ");
    sink.put(header_value(i));
    sink.put("\r\n");
  }
  if (websocket_) {
    // A client that asked to close keeps asking: the backend may refuse the upgrade and answer
    // as plain HTTP, and must then end the connection as the client expects.
    sink.put(keep_alive_ ? "Connection: Upgrade\r\n" : "Connection: Upgrade, close\r\n");
  } else if (!keep_alive_) {
    sink.put("Connection: close\r\n");
  } else if (parser_.http_minor == 0) {
    sink.put("Connection: keep-alive\r\n");
  }
  if (!f.add_headers) {
    sink.put("\r\n");
    return;
  }
  // A trusted peer's chain, every header of that name joined in order, then our hop.
  const auto put_chain = [&](header_role role) {
    if (!trusted) return;
    for (std::size_t i = 0; i < headers_.size(); ++i) {
      const std::string_view v = header_value(i);
      if (v.empty() || headers_[i].role != role) continue;
      sink.put(v);
      sink.put(", ");
    }
  };
  const bool v6 = f.client_ip.find(':') != std::string_view::npos;
  sink.put("X-Forwarded-For: ");
  put_chain(header_role::xff);
  sink.put(f.client_ip);
  sink.put("\r\nForwarded: ");
  put_chain(header_role::forwarded);
  sink.put(v6 ? "for=\"[" : "for=");  // RFC 7239 6: an IPv6 node is quoted and bracketed
  sink.put(f.client_ip);
  sink.put(v6 ? "]\";proto=" : ";proto=");
  sink.put(f.https ? "https\r\n" : "http\r\n");
  if (!kept_proto) {
    sink.put(f.https ? "X-Forwarded-Proto: https\r\n" : "X-Forwarded-Proto: http\r\n");
  }
  if (!kept_real_ip) {
    sink.put("X-Real-IP: ");
    sink.put(f.client_ip);
    sink.put("\r\n");
  }
  sink.put("\r\n");
}

std::size_t request_head_parser::forwarded_head_size(const forwarding& f) const {
  size_sink s;
  emit_forwarded(s, f);
  return s.n;
}

std::size_t request_head_parser::write_forwarded_head(char* out, std::size_t cap,
                                                      const forwarding& f) const {
  write_sink w{out, out + cap};
  emit_forwarded(w, f);
  return w.ok ? static_cast<std::size_t>(w.p - out) : 0;
}

std::string request_head_parser::forwarded_head(const forwarding& f) const {
  std::string out(forwarded_head_size(f), '\0');
  write_forwarded_head(out.data(), out.size(), f);
  return out;
}

}  // namespace wslb::protocol
