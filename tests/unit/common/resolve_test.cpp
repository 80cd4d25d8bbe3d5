#include <doctest/doctest.h>

#include <arpa/inet.h>

#include "common/resolve.h"

using namespace wslb;

namespace {

endpoint at(const char* host, std::uint16_t port) {
  endpoint e;
  e.host = host;
  e.port = port;
  return e;
}

bool is_loopback(const endpoint& e) {
  if (e.addr.ss_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(&e.addr);
    return e.addr_len == sizeof(sockaddr_in) && (ntohl(v4->sin_addr.s_addr) >> 24) == 127;
  }
  if (e.addr.ss_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&e.addr);
    return e.addr_len == sizeof(sockaddr_in6) && IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr);
  }
  return false;
}

std::uint16_t port_of(const endpoint& e) {
  return ntohs(e.addr.ss_family == AF_INET6
                   ? reinterpret_cast<const sockaddr_in6*>(&e.addr)->sin6_port
                   : reinterpret_cast<const sockaddr_in*>(&e.addr)->sin_port);
}

}  // namespace

TEST_CASE("resolve.localhost_is_a_loopback_address_with_our_port") {
  endpoint e = at("localhost", 80);
  std::string err;
  REQUIRE_MESSAGE(resolve_endpoint(e, err), err);
  CHECK(is_loopback(e));
  CHECK(port_of(e) == 80);
  CHECK(e.host == "localhost");  // the name stays, for status, logs and reload identity
}

TEST_CASE("resolve.numeric_addresses_skip_the_resolver") {
  endpoint v4 = at("127.0.0.1", 9001);
  CHECK(fill_numeric_address(v4));
  CHECK(v4.addr.ss_family == AF_INET);
  CHECK(port_of(v4) == 9001);
  endpoint v6 = at("::1", 9);
  std::string err;
  CHECK(resolve_endpoint(v6, err));
  CHECK(v6.addr.ss_family == AF_INET6);
  CHECK(is_loopback(v6));
  CHECK(port_of(v6) == 9);
  endpoint name = at("localhost", 1);
  CHECK_FALSE(fill_numeric_address(name));
}

TEST_CASE("resolve.unknown_name_fails_naming_it") {
  endpoint e = at("no-such-host.invalid", 80);
  std::string err;
  CHECK_FALSE(resolve_endpoint(e, err));
  CHECK_MESSAGE(err.find("cannot resolve 'no-such-host.invalid' (") == 0, err);
  CHECK(e.addr_len == 0);
}
