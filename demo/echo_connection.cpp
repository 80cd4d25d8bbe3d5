#include "demo/echo_connection.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdio>

#include "protocol/http_response.h"
#include "protocol/proxy_protocol.h"

namespace wslb::demo {
namespace {

using protocol::opcode;

const char* reason_phrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Status";
  }
}

// Header names in lower case (HTTP names are case-insensitive and proxies rewrite them);
// repeated headers joined with ", " as RFC 9110 allows for list-valued fields.
std::string headers_to_json(const protocol::request_head_parser& head) {
  std::string json = "{";
  std::vector<std::string> seen;
  for (std::size_t i = 0; i < head.header_count(); ++i) {
    std::string name(head.header_name(i));
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (std::find(seen.begin(), seen.end(), name) != seen.end()) continue;
    std::string value(head.header_value(i));
    for (std::size_t j = i + 1; j < head.header_count(); ++j) {
      if (protocol::iequals(head.header_name(j), name)) {
        value += ", ";
        value += head.header_value(j);
      }
    }
    if (!seen.empty()) json += ',';
    append_json_string(json, name);
    json += ':';
    append_json_string(json, value);
    seen.push_back(std::move(name));
  }
  json += '}';
  return json;
}

bool is_known_opcode(opcode op) {
  switch (op) {
    case opcode::continuation: case opcode::text: case opcode::binary:
    case opcode::close: case opcode::ping: case opcode::pong:
      return true;
  }
  return false;
}

bool is_control(opcode op) { return static_cast<std::uint8_t>(op) >= 0x8; }

void append_frame(std::string& out, opcode op, std::string_view payload) {
  std::uint8_t header[protocol::max_frame_header];
  const auto n = protocol::write_frame_header(header, op, payload.size(), nullptr);
  out.append(reinterpret_cast<const char*>(header), n);
  out.append(payload);
}

}  // namespace

bool looks_like_request_line(std::string_view data, bool& maybe) {
  constexpr std::size_t max_method_len = 16;
  maybe = false;
  for (std::size_t i = 0; i < data.size() && i <= max_method_len; ++i) {
    const char c = data[i];
    if (c == ' ') return i > 0;
    if (c < 'A' || c > 'Z') return false;
  }
  maybe = data.size() <= max_method_len;
  return false;
}

std::string address_text(const sockaddr_storage& addr) {
  char ip[protocol::ip_text_max];
  const auto n = protocol::format_ip(reinterpret_cast<const sockaddr*>(&addr), ip);
  if (n == 0) return {};
  std::uint16_t port = 0;
  if (addr.ss_family == AF_INET) port = ntohs(reinterpret_cast<const sockaddr_in&>(addr).sin_port);
  if (addr.ss_family == AF_INET6) port = ntohs(reinterpret_cast<const sockaddr_in6&>(addr).sin6_port);
  const std::string_view text(ip, n);
  std::string out = text.find(':') != std::string_view::npos ? "[" + std::string(text) + "]"
                                                             : std::string(text);
  return out + ":" + std::to_string(port);
}

void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char esc[8];
          std::snprintf(esc, sizeof esc, "\\u%04x", static_cast<unsigned>(c));
          out += esc;
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

feed_result echo_connection::feed(const std::uint8_t* data, std::size_t len, std::string& out) {
  switch (kind_) {
    case echo_kind::closed:
      return feed_result::close_after_flush;
    case echo_kind::raw:
      out.append(reinterpret_cast<const char*>(data), len);
      return feed_result::keep_open;
    case echo_kind::websocket:
      return feed_frames(data, len, out);
    case echo_kind::http:
      return serve_http(data, len, out);
    case echo_kind::detecting:
      held_.append(reinterpret_cast<const char*>(data), len);
      return detect(out);
  }
  return feed_result::close_after_flush;
}

feed_result echo_connection::peer_closed(std::string& out) {
  if (kind_ == echo_kind::detecting && !held_.empty() &&
      (proxy_seen_ || !settings_->expect_proxy)) {
    // A short raw message that never grew long enough to rule out a request line.
    out += held_;
  }
  held_.clear();
  kind_ = echo_kind::closed;
  return feed_result::close_after_flush;
}

// The PROXY header, when expected, must come first; a connection without one is dropped
// unanswered, as HAProxy's accept-proxy does.
bool echo_connection::strip_proxy_header(feed_result& result) {
  protocol::proxy_header_info info;
  const auto status = protocol::parse_proxy_header(
      reinterpret_cast<const std::uint8_t*>(held_.data()), held_.size(), info);
  if (status == protocol::proxy_parse_status::need_more) {
    result = feed_result::keep_open;
    return false;
  }
  if (status == protocol::proxy_parse_status::invalid) {
    kind_ = echo_kind::closed;
    std::string().swap(held_);
    result = feed_result::close_after_flush;
    return false;
  }
  proxy_seen_ = true;
  held_.erase(0, info.header_len);
  proxy_json_ = "{\"version\":";
  proxy_json_ += info.version == protocol::proxy_version::v1 ? "1" : "2";
  if (info.has_addresses) {
    proxy_json_ += ",\"src\":";
    append_json_string(proxy_json_, address_text(info.source));
    proxy_json_ += ",\"dst\":";
    append_json_string(proxy_json_, address_text(info.destination));
  } else {
    proxy_json_ += ",\"src\":null,\"dst\":null";
  }
  proxy_json_ += '}';
  return true;
}

feed_result echo_connection::detect(std::string& out) {
  if (settings_->expect_proxy && !proxy_seen_) {
    feed_result result;
    if (!strip_proxy_header(result)) return result;
    if (held_.empty()) return feed_result::keep_open;
  }
  bool maybe = false;
  if (looks_like_request_line(held_, maybe)) {
    kind_ = echo_kind::http;
    std::string first;
    first.swap(held_);
    return serve_http(reinterpret_cast<const std::uint8_t*>(first.data()), first.size(), out);
  }
  if (maybe) return feed_result::keep_open;
  kind_ = echo_kind::raw;
  out += held_;
  std::string().swap(held_);
  return feed_result::keep_open;
}

void echo_connection::answer_http(int status, std::string_view body, bool keep_alive,
                                  bool head_only, std::string& out) {
  char line[160];
  const bool no_body = status == 204 || status == 304 || (status >= 100 && status < 200);
  std::snprintf(line, sizeof line, "HTTP/1.1 %d %s\r\n", status, reason_phrase(status));
  out += line;
  if (!no_body) {
    std::snprintf(line, sizeof line, "Content-Type: application/json\r\nContent-Length: %zu\r\n",
                  body.size());
    out += line;
  }
  out += keep_alive ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
  if (!no_body && !head_only) out += body;
}

feed_result echo_connection::serve_http(const std::uint8_t* data, std::size_t len,
                                       std::string& out) {
  while (true) {
    if (body_left_ > 0) {
      const auto skip = static_cast<std::size_t>(std::min<std::uint64_t>(body_left_, len));
      data += skip;
      len -= skip;
      body_left_ -= skip;
      if (body_left_ > 0) return feed_result::keep_open;
    }
    if (len == 0) return feed_result::keep_open;
    if (!head_) head_ = std::make_unique<protocol::request_head_parser>(max_head);
    const auto r = head_->feed(reinterpret_cast<const char*>(data), len);
    if (r.status == protocol::head_status::need_more) return feed_result::keep_open;
    if (r.status == protocol::head_status::error) {
      const auto answer = protocol::error_response(r.http_status);
      out += answer.empty() ? protocol::error_response(400) : answer;
      head_.reset();
      kind_ = echo_kind::closed;
      return feed_result::close_after_flush;
    }
    data += r.head_bytes_in_feed;
    len -= r.head_bytes_in_feed;
    const auto& head = *head_;

    if (head.is_websocket_upgrade()) {  // the parser has checked the key and version
      out += "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Accept: ";
      out += protocol::websocket_accept(head.header("sec-websocket-key").value_or(""));
      out += "\r\n\r\n";
      headers_json_ = headers_to_json(head);
      head_.reset();
      kind_ = echo_kind::websocket;
      // Frames may have been sent right behind the handshake.
      return len == 0 ? feed_result::keep_open : feed_frames(data, len, out);
    }

    bool keep_alive = head.keep_alive();
    if (const auto length_text = head.header("content-length")) {
      std::uint64_t length = 0;
      const auto [end, ec] =
          std::from_chars(length_text->data(), length_text->data() + length_text->size(), length);
      if (ec != std::errc() || end != length_text->data() + length_text->size()) {
        out += protocol::error_response(400);
        head_.reset();
        kind_ = echo_kind::closed;
        return feed_result::close_after_flush;
      }
      body_left_ = length;
    } else if (head.header("transfer-encoding")) {
      keep_alive = false;  // a chunked body is not parsed here: answer, then close
    }

    std::string body = "{\"id\":";
    append_json_string(body, settings_->id);
    body += ",\"method\":";
    append_json_string(body, head.method());
    body += ",\"target\":";
    append_json_string(body, head.target());
    body += ",\"headers\":";
    body += headers_to_json(head);
    body += ",\"proxy\":";
    body += proxy_json_;
    body += '}';
    answer_http(settings_->http_status, body, keep_alive, head.method() == "HEAD", out);
    head_.reset();
    if (!keep_alive) {
      kind_ = echo_kind::closed;
      return feed_result::close_after_flush;
    }
  }
}

feed_result echo_connection::fail_websocket(std::uint16_t code, std::string& out) {
  const auto frame = protocol::make_close_frame(code, false);
  out.append(reinterpret_cast<const char*>(frame.bytes.data()), frame.size);
  kind_ = echo_kind::closed;
  std::string().swap(held_);
  return feed_result::close_after_flush;
}

feed_result echo_connection::feed_frames(const std::uint8_t* data, std::size_t len,
                                         std::string& out) {
  std::size_t i = 0;
  while (i < len) {
    if (!in_frame_) {
      protocol::frame_header h;
      if (held_.empty()) {
        if (!protocol::decode_frame_header(data + i, len - i, h)) {
          held_.assign(reinterpret_cast<const char*>(data + i), len - i);
          return feed_result::keep_open;
        }
        i += h.header_len;
      } else {
        const std::size_t had = held_.size();
        const std::size_t take = std::min(len - i, protocol::max_frame_header - had);
        held_.append(reinterpret_cast<const char*>(data + i), take);
        if (!protocol::decode_frame_header(reinterpret_cast<const std::uint8_t*>(held_.data()),
                                           held_.size(), h)) {
          i += take;
          continue;
        }
        i += h.header_len - had;
        held_.clear();
      }
      if (!h.masked || !is_known_opcode(h.op)) return fail_websocket(1002, out);
      if (is_control(h.op) && (!h.fin || h.payload_len > 125)) return fail_websocket(1002, out);
      frame_ = h;
      in_frame_ = true;
      payload_left_ = h.payload_len;
      mask_offset_ = 0;
      gather_ = is_control(h.op) || (h.op == opcode::text && h.fin && h.payload_len == 6);
      if (!gather_) {
        std::uint8_t header[protocol::max_frame_header];
        const auto n = protocol::write_frame_header(header, h.op, h.payload_len, nullptr);
        if (!h.fin) header[0] &= 0x7F;  // echo fragments as fragments
        out.append(reinterpret_cast<const char*>(header), n);
      }
    }
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(payload_left_, len - i));
    if (n > 0) {
      if (gather_) {
        held_.append(reinterpret_cast<const char*>(data + i), n);
      } else {
        const auto start = out.size();
        out.append(reinterpret_cast<const char*>(data + i), n);
        protocol::apply_mask(reinterpret_cast<std::uint8_t*>(out.data() + start), n, frame_.mask,
                             mask_offset_ & 3);
      }
      mask_offset_ += n;
      payload_left_ -= n;
      i += n;
    }
    if (payload_left_ == 0) {
      if (finish_frame(out) == feed_result::close_after_flush)
        return feed_result::close_after_flush;
    }
  }
  if (held_.empty() && held_.capacity() > 0) std::string().swap(held_);
  return feed_result::keep_open;
}

feed_result echo_connection::finish_frame(std::string& out) {
  in_frame_ = false;
  if (!gather_) return feed_result::keep_open;
  gather_ = false;
  protocol::apply_mask(reinterpret_cast<std::uint8_t*>(held_.data()), held_.size(), frame_.mask);
  std::string payload;
  payload.swap(held_);
  switch (frame_.op) {
    case opcode::ping:
      append_frame(out, opcode::pong, payload);
      break;
    case opcode::pong:
      break;
    case opcode::close: {
      if (payload.size() >= 2) {
        const auto code = static_cast<std::uint16_t>(
            (static_cast<std::uint8_t>(payload[0]) << 8) | static_cast<std::uint8_t>(payload[1]));
        const auto frame = protocol::make_close_frame(code, false);
        out.append(reinterpret_cast<const char*>(frame.bytes.data()), frame.size);
      } else {
        append_frame(out, opcode::close, {});
      }
      kind_ = echo_kind::closed;
      return feed_result::close_after_flush;
    }
    default:
      if (frame_.op == opcode::text && payload == "whoami") {
        add_whoami(out);
      } else {
        append_frame(out, frame_.op, payload);
      }
  }
  return feed_result::keep_open;
}

void echo_connection::add_whoami(std::string& out) const {
  std::string json = "{\"id\":";
  append_json_string(json, settings_->id);
  json += ",\"headers\":";
  json += headers_json_;
  json += ",\"proxy\":";
  json += proxy_json_;
  json += '}';
  append_frame(out, opcode::text, json);
}

}  // namespace wslb::demo
