// Test support: a numeric IPv4 or IPv6 address and port as a sockaddr_storage, the way a worker
// gets a peer from accept(), built by the project's own numeric parser.
#pragma once

#include <cstdint>

#include <doctest/doctest.h>

#include "common/resolve.h"

namespace wslb::testing {

inline sockaddr_storage ip_port(const char* ip, std::uint16_t port) {
  endpoint e;
  e.host = ip;
  e.port = port;
  REQUIRE(fill_numeric_address(e));
  return e.addr;
}

}  // namespace wslb::testing
