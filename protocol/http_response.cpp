#include "protocol/http_response.h"

#include "protocol/http_request.h"

namespace wslb::protocol {

// Each answer is one literal so that writing it costs nothing; the unit test checks every
// Content-Length against its body.
std::string_view error_response(int status) {
  switch (status) {
    case 400:
      return "HTTP/1.1 400 Bad Request\r\n"
             "Content-Type: text/plain\r\n"
             "Content-Length: 12\r\n"
             "Connection: close\r\n"
             "\r\n"
             "Bad Request\n";
    case 408:
      return "HTTP/1.1 408 Request Timeout\r\n"
             "Content-Type: text/plain\r\n"
             "Content-Length: 16\r\n"
             "Connection: close\r\n"
             "\r\n"
             "Request Timeout\n";
    case 426:
      return "HTTP/1.1 426 Upgrade Required\r\n"
             "Content-Type: text/plain\r\n"
             "Content-Length: 17\r\n"
             "Connection: close\r\n"
             "Sec-WebSocket-Version: 13\r\n"
             "\r\n"
             "Upgrade Required\n";
    case 431:
      return "HTTP/1.1 431 Request Header Fields Too Large\r\n"
             "Content-Type: text/plain\r\n"
             "Content-Length: 32\r\n"
             "Connection: close\r\n"
             "\r\n"
             "Request Header Fields Too Large\n";
    case 502:
      return "HTTP/1.1 502 Bad Gateway\r\n"
             "Content-Type: text/plain\r\n"
             "Content-Length: 12\r\n"
             "Connection: close\r\n"
             "\r\n"
             "Bad Gateway\n";
    case 503:
      return "HTTP/1.1 503 Service Unavailable\r\n"
             "Content-Type: text/plain\r\n"
             "Content-Length: 20\r\n"
             "Connection: close\r\n"
             "\r\n"
             "Service Unavailable\n";
    case 504:
      return "HTTP/1.1 504 Gateway Timeout\r\n"
             "Content-Type: text/plain\r\n"
             "Content-Length: 16\r\n"
             "Connection: close\r\n"
             "\r\n"
             "Gateway Timeout\n";
    default:
      return {};
  }
}

std::string busy_response(std::uint32_t retry_after_s) {
  return "HTTP/1.1 503 Service Unavailable\r\n"
         "Content-Type: text/plain\r\n"
         "Content-Length: 20\r\n"
         "Connection: close\r\n"
         "Retry-After: " + std::to_string(retry_after_s) + "\r\n"
         "\r\n"
         "Service Unavailable\n";
}

std::string_view reason_phrase(int status) {
  switch (status) {
    case 400: return "Bad Request";
    case 408: return "Request Timeout";
    case 426: return "Upgrade Required";
    case 431: return "Request Header Fields Too Large";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return {};
  }
}

sniff_result response_sniffer::feed(const char* data, std::size_t len) {
  if (result_.status != sniff_status::need_more) return result_;
  static constexpr std::string_view prefix = "HTTP/1.";
  for (std::size_t i = 0; i < len; ++i) {
    const char c = data[i];
    const std::size_t pos = seen_++;
    if (seen_ > max_head_) {
      result_.status = sniff_status::invalid;
      return result_;
    }
    // "HTTP/1.x NNN": a fixed shape up to the code; anything else is not an HTTP/1 answer.
    bool ok = true;
    if (pos < prefix.size()) {
      ok = c == prefix[pos];
    } else if (pos == prefix.size()) {
      ok = c >= '0' && c <= '9';
    } else if (pos == prefix.size() + 1) {
      ok = c == ' ';
    } else if (pos <= prefix.size() + 4) {
      ok = c >= '0' && c <= '9';
      if (ok) {
        code_ = static_cast<std::uint16_t>(code_ * 10 + (c - '0'));
        ++code_digits_;
      }
    } else if (pos == prefix.size() + 5) {
      ok = c == ' ' || c == '\r' || c == '\n';
    }
    if (!ok) {
      result_.status = sniff_status::invalid;
      return result_;
    }
    // The head ends at the first empty line; bare LF line ends are accepted as RFC 9112 allows.
    if (c == '\n') {
      if (line_chars_ == 0) {
        result_.status = sniff_status::complete;
        result_.head_bytes_in_feed = i + 1;
        return result_;
      }
      line_chars_ = 0;
    } else if (c != '\r' && line_chars_ < 255) {
      ++line_chars_;
    }
  }
  return result_;
}

std::optional<std::string_view> response_header(std::string_view head, std::string_view name) {
  // Skip the status line, then look at one "Name: value" line at a time.
  std::size_t nl = head.find('\n');
  while (nl != std::string_view::npos) {
    head.remove_prefix(nl + 1);
    nl = head.find('\n');
    std::string_view line = head.substr(0, nl);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) break;
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos || !iequals(line.substr(0, colon), name)) continue;
    return trim(line.substr(colon + 1));
  }
  return std::nullopt;
}

}  // namespace wslb::protocol
