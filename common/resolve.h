// Turning the host of a HOST:PORT into the socket address the listener binds or a worker
// connects to. Done once, when flags are parsed: at `wslb run` and on every reload (like nginx
// without a `resolver`), never per connection.
#pragma once

#include <string>

#include "common/config.h"

namespace wslb {

// Fills `where.addr` from `where.host` (no brackets) and `where.port` when the host is a numeric
// IPv4 or IPv6 address; returns false otherwise, without asking any resolver.
bool fill_numeric_address(endpoint& where);

// As fill_numeric_address, and for any other host asks the system resolver (getaddrinfo:
// /etc/hosts, then DNS as nsswitch.conf says) and takes its first answer, in the resolver's
// preferred order. Blocks as long as the resolver does. On failure returns false and sets
// `error` to "cannot resolve 'HOST' (reason)". Called by parse_endpoint.
bool resolve_endpoint(endpoint& where, std::string& error);

}  // namespace wslb
