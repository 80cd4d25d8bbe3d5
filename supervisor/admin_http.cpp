#include "supervisor/admin_http.h"

#include <algorithm>
#include <cctype>

namespace wslb::supervisor {

namespace {

const char* reason_phrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    default: return "Unknown";
  }
}

bool equals_ignoring_case(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool token_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// Same length and same bytes, in a time that depends only on the lengths: a remote client
// must not learn the token a byte at a time from how fast a wrong one is refused.
bool same_secret(std::string_view given, std::string_view token) {
  unsigned char diff = given.size() == token.size() ? 0 : 1;
  for (std::size_t i = 0; i < given.size(); ++i) {
    diff |= static_cast<unsigned char>(given[i] ^ token[i % token.size()]);
  }
  return diff == 0;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percent_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 &&
        hex_value(s[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
      i += 2;
    } else {
      out += s[i] == '+' ? ' ' : s[i];
    }
  }
  return out;
}

}  // namespace

std::optional<std::size_t> admin_head_length(std::string_view received) {
  const std::size_t end = received.find("\r\n\r\n");
  if (end != std::string_view::npos) return end + 4;
  // A bare-LF client (netcat, by hand) is served too.
  const std::size_t lf = received.find("\n\n");
  if (lf != std::string_view::npos) return lf + 2;
  return std::nullopt;
}

std::optional<admin_request> parse_admin_request(std::string_view head) {
  admin_request r;
  std::size_t line_end = head.find('\n');
  if (line_end == std::string_view::npos) return std::nullopt;
  std::string_view line = head.substr(0, line_end);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  const std::size_t sp1 = line.find(' ');
  const std::size_t sp2 = line.rfind(' ');
  if (sp1 == std::string_view::npos || sp2 == sp1) return std::nullopt;
  r.method = std::string(line.substr(0, sp1));
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (r.method.empty() || !std::all_of(r.method.begin(), r.method.end(), token_char)) {
    return std::nullopt;
  }
  if (target.empty() || target.front() != '/' ||
      target.find_first_of(" \t\r") != std::string_view::npos) {
    return std::nullopt;
  }
  if (version != "HTTP/1.1" && version != "HTTP/1.0") return std::nullopt;
  const std::size_t question = target.find('?');
  r.path = std::string(target.substr(0, question));
  if (question != std::string_view::npos) r.query = std::string(target.substr(question + 1));

  std::size_t pos = line_end + 1;
  while (pos < head.size()) {
    line_end = head.find('\n', pos);
    if (line_end == std::string_view::npos) line_end = head.size();
    line = head.substr(pos, line_end - pos);
    pos = line_end + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) break;
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0 ||
        !std::all_of(line.begin(), line.begin() + static_cast<std::ptrdiff_t>(colon), token_char)) {
      return std::nullopt;
    }
    const std::string_view name = line.substr(0, colon);
    const std::string_view value = trim(line.substr(colon + 1));
    if (equals_ignoring_case(name, "authorization")) r.authorization = std::string(value);
    if (equals_ignoring_case(name, "accept")) r.accept = std::string(value);
  }
  return r;
}

std::string query_parameter(std::string_view query, std::string_view key) {
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    const std::size_t eq = pair.find('=');
    if (pair.substr(0, eq) == key) {
      return eq == std::string_view::npos ? std::string() : percent_decode(pair.substr(eq + 1));
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return {};
}

bool admin_authorized(const admin_request& request, std::string_view token) {
  if (token.empty()) return true;
  std::string_view auth = request.authorization;
  constexpr std::string_view scheme = "Bearer ";
  if (auth.size() > scheme.size() && equals_ignoring_case(auth.substr(0, scheme.size()), scheme)) {
    return same_secret(trim(auth.substr(scheme.size())), token);
  }
  const std::string from_query = query_parameter(request.query, "token");
  return !from_query.empty() && same_secret(from_query, token);
}

std::string render_admin_response(const admin_response& response) {
  std::string out = "HTTP/1.1 " + std::to_string(response.status) + " " +
                    reason_phrase(response.status) + "\r\nContent-Type: " +
                    response.content_type + "\r\nContent-Length: " +
                    std::to_string(response.body.size()) +
                    "\r\nCache-Control: no-store\r\nConnection: close\r\n" +
                    response.extra_headers + "\r\n";
  out += response.body;
  return out;
}

admin_response plain_admin_response(int status, std::string body) {
  admin_response r;
  r.status = status;
  r.body = std::move(body) + "\n";
  return r;
}

}  // namespace wslb::supervisor
