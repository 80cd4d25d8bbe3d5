// Parsers for the values operators write in flags and config files. Pure functions, except
// that parse_endpoint asks the system resolver about a host name; each returns false and fills
// `error` with what is wrong with the value (not which flag: the caller names the flag).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/config.h"

namespace wslb {

// The longest "HOST:PORT" accepted: what the shared table's address field holds.
inline constexpr std::size_t max_endpoint_chars = 63;

// "127.0.0.1:8080", "[::1]:8080", "app1:8080". A numeric address is used as is; a name is
// resolved now, once (see resolve_endpoint), and `out.host` keeps the name for display and
// identity. Port 1-65535, or 0 when `allow_port_zero` (a listener on an ephemeral port).
// `out` is only written on success.
bool parse_endpoint(std::string_view text, endpoint& out, std::string& error,
                    bool allow_port_zero = false);
// "HOST:PORT" then any of ",weight=N" (1-1000), ",maxconn=N" (1-10000000, live connections
// across every worker), ",slowstart=DURATION" (up to 1h), ",tls" with ",sni=NAME" and
// ",ca=FILE" (made absolute against the current directory), each at most once. The CA file is
// read later (tls::load_backend_tls).
bool parse_backend(std::string_view text, backend_config& out, std::string& error);
// "30s", "1500ms", "2m", "0"; a bare number means seconds.
bool parse_duration_ms(std::string_view text, std::uint32_t& out_ms, std::string& error);
// "16k", "1m", "4096".
bool parse_size(std::string_view text, std::uint32_t& out, std::string& error);
// "NAME" or "NAME,max-age=DURATION" (--sticky-cookie): NAME a cookie-name token (RFC 6265),
// DURATION as parse_duration_ms, at least a second, kept in whole seconds.
bool parse_sticky_cookie(std::string_view text, sticky_cookie_config& out, std::string& error);
// "least-conn", "round-robin", "source-hash", "header:NAME", "cookie:NAME", "query:NAME".
bool parse_balance(std::string_view text, balance_config& out, std::string& error);

}  // namespace wslb
