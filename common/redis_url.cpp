#include "common/redis_url.h"

#include <charconv>

namespace wslb {

namespace {

bool parse_number(std::string_view text, std::uint32_t lo, std::uint32_t hi, std::uint32_t& out) {
  if (text.empty()) return false;
  std::uint32_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < lo || v > hi) return false;
  out = v;
  return true;
}

bool host_chars_ok(std::string_view host) {
  for (char c : host) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '-' || c == '_' || c == ':';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

std::string redis_target::to_string() const {
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port) + "/" + std::to_string(db);
}

bool parse_redis_url(std::string_view text, redis_target& out, std::string& error) {
  const auto fail = [&](const std::string& why) {
    error = "'" + std::string(text) + "' " + why;
    return false;
  };
  constexpr std::string_view scheme = "redis://";
  if (text.substr(0, scheme.size()) != scheme) {
    return fail("is not a redis:// URL (redis://[:PASSWORD@]HOST:PORT[/DB])");
  }
  std::string_view rest = text.substr(scheme.size());
  redis_target r;
  if (const std::size_t at = rest.rfind('@'); at != std::string_view::npos) {
    const std::string_view credentials = rest.substr(0, at);
    const std::size_t colon = credentials.find(':');
    if (colon == std::string_view::npos) return fail("has credentials without ':' before the password");
    r.user = std::string(credentials.substr(0, colon));
    r.password = std::string(credentials.substr(colon + 1));
    if (r.password.empty()) return fail("has an empty password");
    rest = rest.substr(at + 1);
  }
  std::string_view db_text;
  if (const std::size_t slash = rest.find('/'); slash != std::string_view::npos) {
    db_text = rest.substr(slash + 1);
    rest = rest.substr(0, slash);
    if (!parse_number(db_text, 0, 15, r.db)) return fail("has a database that is not 0 to 15");
  }
  std::string_view host = rest;
  std::string_view port_text;
  if (!rest.empty() && rest.front() == '[') {
    const std::size_t close = rest.find(']');
    if (close == std::string_view::npos) return fail("has an unclosed '[' in the host");
    host = rest.substr(1, close - 1);
    const std::string_view after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return fail("has text after the bracketed host");
      port_text = after.substr(1);
      if (port_text.empty()) return fail("has an empty port");
    }
  } else if (const std::size_t colon = rest.rfind(':'); colon != std::string_view::npos) {
    host = rest.substr(0, colon);
    port_text = rest.substr(colon + 1);
    if (port_text.empty()) return fail("has an empty port");
    if (host.find(':') != std::string_view::npos) return fail("has an IPv6 host without brackets");
  }
  if (host.empty()) return fail("has no host");
  if (!host_chars_ok(host)) return fail("has a host with characters a host name cannot have");
  if (!port_text.empty()) {
    std::uint32_t port = 0;
    if (!parse_number(port_text, 1, 65535, port)) return fail("has a port that is not 1 to 65535");
    r.port = static_cast<std::uint16_t>(port);
  }
  r.host = std::string(host);
  out = std::move(r);
  return true;
}

}  // namespace wslb
