#include "common/parse.h"

#include <arpa/inet.h>
#include <unistd.h>

#include <charconv>
#include <cstring>
#include <initializer_list>

#include "common/resolve.h"
#include "shm/layout.h"

namespace wslb {

static_assert(max_endpoint_chars + 1 == shm::address_chars,
              "an accepted HOST:PORT must fit the table's address field with its NUL");

namespace {

bool parse_uint(std::string_view text, std::uint64_t& out) {
  if (text.empty()) return false;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size();
}

struct unit_scale {
  std::string_view unit;
  std::uint64_t scale;
};

// Digits followed by one of `units` ("" for a bare number), times that unit's scale, when the
// result is at most `limit`.
bool parse_scaled(std::string_view text, std::initializer_list<unit_scale> units,
                  std::uint64_t limit, std::uint64_t& out) {
  std::size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  std::uint64_t n = 0;
  if (!parse_uint(text.substr(0, digits), n)) return false;
  for (const unit_scale& u : units) {
    if (u.unit != text.substr(digits)) continue;
    if (n > limit / u.scale) return false;
    out = n * u.scale;
    return true;
  }
  return false;
}

}  // namespace

std::string endpoint::to_string() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

std::string endpoint::address_text() const {
  char text[INET6_ADDRSTRLEN] = "?";
  if (addr.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&addr)->sin_addr, text, sizeof text);
  } else if (addr.ss_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_addr, text,
              sizeof text);
  }
  return text;
}

bool endpoint::same_address(const endpoint& other) const {
  return addr_len == other.addr_len && std::memcmp(&addr, &other.addr, addr_len) == 0;
}

bool parse_endpoint(std::string_view text, endpoint& out, std::string& error,
                    bool allow_port_zero) {
  std::string_view host, port_text;
  const bool bracketed = !text.empty() && text.front() == '[';
  if (bracketed) {
    const auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      error = "'" + std::string(text) + "' is not [IPV6]:PORT";
      return false;
    }
    host = text.substr(1, close - 1);
    port_text = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      error = "'" + std::string(text) + "' has no port (expected HOST:PORT)";
      return false;
    }
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
  }
  if (host.empty()) {
    error = "'" + std::string(text) + "' has no host (expected HOST:PORT)";
    return false;
  }
  std::uint64_t port = 0;
  if (!parse_uint(port_text, port) || port > 65535 || (port == 0 && !allow_port_zero)) {
    error = "port '" + std::string(port_text) + "' in '" + std::string(text) +
            "' is out of range (1-65535)";
    return false;
  }
  endpoint parsed;
  parsed.host = std::string(host);
  parsed.port = static_cast<std::uint16_t>(port);
  // "HOST:PORT" is the backend's identity across reloads and is shown by `wslb status`, both
  // from a fixed field of the shared table: a longer one would be cut short there (and two
  // long names could end up the same), so refuse it before asking any resolver.
  if (const std::string shown = parsed.to_string(); shown.size() > max_endpoint_chars) {
    error = "'" + shown + "' is " + std::to_string(shown.size()) +
            " characters; HOST:PORT may be at most " + std::to_string(max_endpoint_chars) +
            " (use a shorter name, e.g. an alias in /etc/hosts)";
    return false;
  }
  if (bracketed) {
    if (!fill_numeric_address(parsed)) {
      error = "'" + std::string(host) + "' in '" + std::string(text) +
              "' is not a numeric IPv6 address (only those go in brackets)";
      return false;
    }
  } else if (!resolve_endpoint(parsed, error)) {
    return false;
  }
  out = std::move(parsed);
  return true;
}

namespace {

// A host name for SNI and verification: letters, digits, '-' and '.', as the table holds it.
bool is_sni_name(std::string_view name) {
  if (name.empty() || name.size() >= shm::address_chars) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '.';
    if (!ok) return false;
  }
  return true;
}

// `path` made absolute against the current directory: the master and its children may run
// from elsewhere (and the journal keeps the path for the next run).
std::string absolute_path(std::string_view path) {
  if (!path.empty() && path.front() == '/') return std::string(path);
  char cwd[4096];
  if (getcwd(cwd, sizeof cwd) == nullptr) return std::string(path);
  return std::string(cwd) + "/" + std::string(path);
}

}  // namespace

bool parse_backend(std::string_view text, backend_config& out, std::string& error) {
  const auto comma = text.find(',');
  if (!parse_endpoint(text.substr(0, comma), out.where, error)) return false;
  out.weight = 1;
  out.maxconn = 0;
  out.slowstart_ms = 0;
  out.tls = {};
  if (comma == std::string_view::npos) return true;
  // Options after the address, each once, in any order: weight=N, maxconn=N, slowstart=D,
  // tls, sni=NAME, ca=FILE (the last two with tls).
  std::string_view rest = text.substr(comma + 1);
  bool seen[6] = {false, false, false, false, false, false};
  constexpr const char* known =
      "is not weight=N, maxconn=N, slowstart=DURATION, tls, sni=NAME or ca=FILE";
  std::string_view tls_option;  // the first of sni=, ca= (they need tls)
  for (;;) {
    const auto next = rest.find(',');
    const std::string_view item = rest.substr(0, next);
    const auto eq = item.find('=');
    const std::string_view key = item.substr(0, eq);
    const std::string_view value =
        eq == std::string_view::npos ? std::string_view() : item.substr(eq + 1);
    const auto bad = [&](const char* what) {
      error = "'" + std::string(item) + "' in '" + std::string(text) + "' " + what;
      return false;
    };
    std::uint64_t n = 0;
    if (item == "tls") {
      if (seen[3]) return bad("repeats tls");
      seen[3] = true;
      out.tls.enabled = true;
    } else if (eq == std::string_view::npos) {
      return bad(known);
    } else if (key == "weight") {
      if (seen[0]) return bad("repeats weight");
      seen[0] = true;
      if (!parse_uint(value, n) || n < 1 || n > 1000) return bad("is not weight=N with N in 1-1000");
      out.weight = static_cast<std::uint32_t>(n);
    } else if (key == "maxconn") {
      if (seen[1]) return bad("repeats maxconn");
      seen[1] = true;
      if (!parse_uint(value, n) || n < 1 || n > 10'000'000) {
        return bad("is not maxconn=N with N in 1-10000000");
      }
      out.maxconn = static_cast<std::uint32_t>(n);
    } else if (key == "slowstart") {
      if (seen[2]) return bad("repeats slowstart");
      seen[2] = true;
      std::string unused;
      if (!parse_duration_ms(value, out.slowstart_ms, unused) || out.slowstart_ms > 3'600'000) {
        return bad("is not slowstart=DURATION (like 30s, at most 1h)");
      }
    } else if (key == "sni") {
      if (seen[4]) return bad("repeats sni");
      seen[4] = true;
      if (!is_sni_name(value)) {
        return bad("is not sni=NAME with a host name of letters, digits, '-' and '.' (at most 63)");
      }
      out.tls.sni = std::string(value);
      if (tls_option.empty()) tls_option = item;
    } else if (key == "ca") {
      if (seen[5]) return bad("repeats ca");
      seen[5] = true;
      out.tls.ca_file = absolute_path(value);
      if (value.empty() || out.tls.ca_file.size() >= shm::tls_ca_chars ||
          out.tls.ca_file.find_first_of(",\t\r\n") != std::string::npos) {
        return bad(("is not ca=FILE with a path of at most " +
                    std::to_string(shm::tls_ca_chars - 1) + " characters")
                       .c_str());
      }
      if (tls_option.empty()) tls_option = item;
    } else {
      return bad(known);
    }
    if (next == std::string_view::npos) break;
    rest = rest.substr(next + 1);
  }
  if (!tls_option.empty() && !out.tls.enabled) {
    error = "'" + std::string(tls_option) + "' in '" + std::string(text) +
            "' needs tls (HOST:PORT,tls," + std::string(tls_option) + ")";
    return false;
  }
  return true;
}

bool parse_duration_ms(std::string_view text, std::uint32_t& out_ms, std::string& error) {
  std::uint64_t ms = 0;
  if (!parse_scaled(text, {{"", 1000}, {"s", 1000}, {"ms", 1}, {"m", 60'000}, {"h", 3'600'000}},
                    0xffffffffULL, ms)) {
    error = "'" + std::string(text) + "' is not a duration (like 30s, 1500ms, 2m)";
    return false;
  }
  out_ms = static_cast<std::uint32_t>(ms);
  return true;
}

bool parse_size(std::string_view text, std::uint32_t& out, std::string& error) {
  std::uint64_t bytes = 0;
  if (!parse_scaled(text, {{"", 1}, {"k", 1024}, {"K", 1024}, {"m", 1 << 20}, {"M", 1 << 20}},
                    0x7fffffffULL, bytes)) {
    error = "'" + std::string(text) + "' is not a size (like 16k, 4096)";
    return false;
  }
  out = static_cast<std::uint32_t>(bytes);
  return true;
}

bool parse_sticky_cookie(std::string_view text, sticky_cookie_config& out, std::string& error) {
  const std::size_t comma = text.find(',');
  const std::string_view name = text.substr(0, comma);
  // RFC 6265 4.1.1: cookie-name is an RFC 2616 token.
  const bool token = !name.empty() && name.find_first_not_of(
      "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") ==
      std::string_view::npos;
  if (!token || name.size() > 64) {
    error = "'" + std::string(name) + "' is not a cookie name (1-64 letters, digits or !#$%&'*+-.^_`|~)";
    return false;
  }
  sticky_cookie_config c;
  c.name = std::string(name);
  if (comma != std::string_view::npos) {
    const std::string_view option = text.substr(comma + 1);
    constexpr std::string_view prefix = "max-age=";
    if (option.substr(0, prefix.size()) != prefix) {
      error = "'" + std::string(option) + "' is not max-age=DURATION";
      return false;
    }
    std::uint32_t ms = 0;
    if (!parse_duration_ms(option.substr(prefix.size()), ms, error)) return false;
    if (ms < 1000) {
      error = "max-age '" + std::string(option.substr(prefix.size())) + "' is below 1s";
      return false;
    }
    c.max_age_s = ms / 1000;
  }
  out = c;
  return true;
}

bool parse_balance(std::string_view text, balance_config& out, std::string& error) {
  out.key.clear();
  if (text == "least-conn") { out.mode = balance_mode::least_conn; return true; }
  if (text == "round-robin") { out.mode = balance_mode::round_robin; return true; }
  if (text == "source-hash") { out.mode = balance_mode::source_hash; return true; }
  const auto colon = text.find(':');
  const std::string_view kind = text.substr(0, colon);
  const std::string_view key =
      colon == std::string_view::npos ? std::string_view{} : text.substr(colon + 1);
  if (kind == "header") out.mode = balance_mode::header;
  else if (kind == "cookie") out.mode = balance_mode::cookie;
  else if (kind == "query") out.mode = balance_mode::query;
  else {
    error = "'" + std::string(text) +
            "' is not one of least-conn, round-robin, source-hash, header:NAME, cookie:NAME, "
            "query:NAME";
    return false;
  }
  if (key.empty()) {
    error = "'" + std::string(text) + "' needs a name after the colon";
    return false;
  }
  out.key = std::string(key);
  return true;
}

const char* to_string(balance_mode m) {
  switch (m) {
    case balance_mode::least_conn: return "least-conn";
    case balance_mode::round_robin: return "round-robin";
    case balance_mode::source_hash: return "source-hash";
    case balance_mode::header: return "header";
    case balance_mode::cookie: return "cookie";
    case balance_mode::query: return "query";
  }
  return "?";
}
const char* to_string(proxy_mode m) { return m == proxy_mode::http ? "http" : "tcp"; }
const char* to_string(check_kind k) {
  switch (k) {
    case check_kind::none: return "none";
    case check_kind::tcp: return "tcp";
    case check_kind::http: return "http";
    case check_kind::websocket: return "websocket";
  }
  return "?";
}
const char* to_string(rebalance_mode m) {
  switch (m) {
    case rebalance_mode::off: return "off";
    case rebalance_mode::manual: return "manual";
    case rebalance_mode::auto_: return "auto";
  }
  return "?";
}

}  // namespace wslb
