#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <string>
#include <vector>

#include "common/cidr.h"

using namespace wslb;

namespace {

sockaddr_storage address_of(const char* text) {
  sockaddr_storage ss{};
  auto* in = reinterpret_cast<sockaddr_in*>(&ss);
  if (inet_pton(AF_INET, text, &in->sin_addr) == 1) {
    in->sin_family = AF_INET;
    return ss;
  }
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
  REQUIRE(inet_pton(AF_INET6, text, &in6->sin6_addr) == 1);
  in6->sin6_family = AF_INET6;
  return ss;
}

bool trusted(const std::vector<cidr>& list, const char* text) {
  const sockaddr_storage ss = address_of(text);
  return in_any(list, reinterpret_cast<const sockaddr*>(&ss));
}

}  // namespace

TEST_CASE("cidr.matches_v4_v6_and_mapped_addresses") {
  std::vector<cidr> list;
  std::string error;
  REQUIRE(parse_cidr_list("10.0.0.0/8,192.0.2.7,2001:db8::/32,172.16.0.0/12", list, error));
  CHECK(list.size() == 4);
  CHECK(trusted(list, "10.255.1.2"));
  CHECK(trusted(list, "192.0.2.7"));
  CHECK_FALSE(trusted(list, "192.0.2.8"));
  CHECK(trusted(list, "172.31.255.255"));
  CHECK_FALSE(trusted(list, "172.32.0.0"));
  CHECK(trusted(list, "2001:db8:1::5"));
  CHECK_FALSE(trusted(list, "2001:db9::1"));
  CHECK(trusted(list, "::ffff:10.1.2.3"));  // a dual-stack listener's view of an IPv4 client
  CHECK_FALSE(trusted(list, "::ffff:11.1.2.3"));

  REQUIRE(parse_cidr_list("0.0.0.0/0", list, error));
  CHECK(trusted(list, "203.0.113.9"));
  REQUIRE(parse_cidr_list("", list, error));
  CHECK(list.empty());
  CHECK_FALSE(trusted(list, "127.0.0.1"));
}

TEST_CASE("cidr.refuses_what_is_not_a_range") {
  std::vector<cidr> list;
  std::string error;
  for (const char* bad : {"10.0.0.1/8", "10.0.0.0/33", "::1/129", "10.0.0.0/", "10.0.0.0/x",
                          "host.example", "10.0.0.0/8,,", "1.2.3"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_cidr_list(bad, list, error));
    CHECK_FALSE(error.empty());
  }
  CHECK_FALSE(parse_cidr_list("10.0.0.1/8", list, error));
  CHECK(error == "'10.0.0.1/8' has host bits set below its /8 prefix");
}
