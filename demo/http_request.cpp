#include "demo/http_request.h"

#include <cctype>

namespace wslb::demo {
namespace {

constexpr std::size_t max_method_len = 16;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool is_token_char(char c) {
  const auto u = static_cast<unsigned char>(c);
  if (std::isalnum(u)) return true;
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+': case '-':
    case '.': case '^': case '_': case '`': case '|': case '~':
      return true;
    default:
      return false;
  }
}

}  // namespace

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  }
  return true;
}

bool header_has_token(std::string_view value, std::string_view token) {
  while (!value.empty()) {
    const auto comma = value.find(',');
    if (iequals(trim(value.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

std::string_view http_request_head::header(std::string_view name) const {
  for (const auto& h : headers)
    if (iequals(h.name, name)) return h.value;
  return {};
}

bool http_request_head::has_header(std::string_view name) const {
  for (const auto& h : headers)
    if (iequals(h.name, name)) return true;
  return false;
}

bool http_request_head::is_websocket_upgrade() const {
  return header_has_token(header("upgrade"), "websocket");
}

bool http_request_head::keep_alive() const {
  const auto conn = header("connection");
  if (minor_version >= 1) return !header_has_token(conn, "close");
  return header_has_token(conn, "keep-alive");
}

bool looks_like_request_line(std::string_view data, bool& maybe) {
  maybe = false;
  for (std::size_t i = 0; i < data.size() && i <= max_method_len; ++i) {
    const char c = data[i];
    if (c == ' ') return i > 0;
    if (c < 'A' || c > 'Z') return false;
  }
  maybe = data.size() <= max_method_len;
  return false;
}

head_status parse_request_head(std::string_view data, http_request_head& out) {
  const auto end = data.find("\r\n\r\n");
  if (end == std::string_view::npos) return head_status::incomplete;
  out.headers.clear();
  out.head_len = end + 4;
  std::string_view rest = data.substr(0, end + 2);  // every line ends in CRLF

  const auto eol = rest.find("\r\n");
  std::string_view line = rest.substr(0, eol);
  rest.remove_prefix(eol + 2);
  const auto sp1 = line.find(' ');
  if (sp1 == std::string_view::npos || sp1 == 0) return head_status::bad;
  const auto sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || sp2 == sp1 + 1) return head_status::bad;
  out.method = line.substr(0, sp1);
  for (char c : out.method)
    if (!is_token_char(c)) return head_status::bad;
  out.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const auto version = line.substr(sp2 + 1);
  if (version == "HTTP/1.1") {
    out.minor_version = 1;
  } else if (version == "HTTP/1.0") {
    out.minor_version = 0;
  } else {
    return head_status::bad;
  }

  while (!rest.empty()) {
    const auto next = rest.find("\r\n");
    line = rest.substr(0, next);
    rest.remove_prefix(next + 2);
    const auto colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return head_status::bad;
    const auto name = line.substr(0, colon);
    for (char c : name)
      if (!is_token_char(c)) return head_status::bad;  // also refuses obsolete line folding
    out.headers.push_back({name, trim(line.substr(colon + 1))});
  }
  return head_status::complete;
}

}  // namespace wslb::demo
