#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <sys/un.h>

#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "tests/unit/socket_address.h"
#include "protocol/proxy_protocol.h"

using namespace wslb::protocol;

using wslb::testing::ip_port;

namespace {

const sockaddr* sa(const sockaddr_storage& ss) { return reinterpret_cast<const sockaddr*>(&ss); }

std::string v1_text(const sockaddr_storage& c, const sockaddr_storage& l) {
  std::uint8_t buf[proxy_header_max];
  const std::size_t n = write_proxy_header(proxy_version::v1, sa(c), sa(l), buf, sizeof buf);
  return std::string(reinterpret_cast<const char*>(buf), n);
}

std::string ip_of(const sockaddr_storage& ss) {
  char text[ip_text_max];
  format_ip(sa(ss), text);
  return text;
}

std::uint16_t port_of(const sockaddr_storage& ss) {
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&ss)->sin_port);
  return ntohs(reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_port);
}

}  // namespace

TEST_CASE("proxy_protocol.v1_text") {
  CHECK(v1_text(ip_port("192.0.2.7", 51234), ip_port("127.0.0.1", 8080)) ==
        "PROXY TCP4 192.0.2.7 127.0.0.1 51234 8080\r\n");
  CHECK(v1_text(ip_port("2001:db8::1", 1), ip_port("::1", 65535)) ==
        "PROXY TCP6 2001:db8::1 ::1 1 65535\r\n");
  // A dual-stack listener reports IPv4 clients as IPv4-mapped: written as plain IPv4.
  CHECK(v1_text(ip_port("::ffff:10.1.2.3", 40000), ip_port("::ffff:10.0.0.1", 80)) ==
        "PROXY TCP4 10.1.2.3 10.0.0.1 40000 80\r\n");
  CHECK(v1_text(ip_port("::ffff:10.1.2.3", 40000), ip_port("2001:db8::2", 80)) ==
        "PROXY TCP6 ::ffff:10.1.2.3 2001:db8::2 40000 80\r\n");
  sockaddr_storage unix_addr{};
  unix_addr.ss_family = AF_UNIX;
  CHECK(v1_text(unix_addr, ip_port("127.0.0.1", 1)) == "PROXY UNKNOWN\r\n");
  // The longest possible line fits the spec's 107 bytes.
  const std::string longest = v1_text(ip_port("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 65535),
                                      ip_port("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 65535));
  CHECK(longest.size() <= proxy_v1_max);
  CHECK(longest.size() == 104);
  std::uint8_t small[20];
  CHECK(write_proxy_header(proxy_version::v1, sa(ip_port("1.2.3.4", 1)),
                           sa(ip_port("1.2.3.4", 2)), small, sizeof small) == 0);
}

TEST_CASE("proxy_protocol.v2_bytes") {
  std::uint8_t buf[proxy_header_max];
  const sockaddr_storage c = ip_port("192.0.2.7", 0x1234);
  const sockaddr_storage l = ip_port("10.0.0.1", 0x0050);
  const std::size_t n = write_proxy_header(proxy_version::v2, sa(c), sa(l), buf, sizeof buf);
  const std::vector<std::uint8_t> expected = {
      0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,  // signature
      0x21, 0x11, 0x00, 0x0C,                                                  // v2 PROXY TCP4 12
      192,  0,    2,    7,    10,   0,    0,    1,                             // addresses
      0x12, 0x34, 0x00, 0x50};                                                 // ports
  CHECK(std::vector<std::uint8_t>(buf, buf + n) == expected);
  CHECK(write_proxy_header(proxy_version::v2, sa(c), sa(l), buf, 27) == 0);

  const std::size_t n6 = write_proxy_header(proxy_version::v2, sa(ip_port("2001:db8::1", 7)),
                                            sa(ip_port("::1", 8)), buf, sizeof buf);
  CHECK(n6 == proxy_v2_max);
  CHECK(buf[13] == 0x21);
  CHECK(buf[15] == 36);
  CHECK(buf[16] == 0x20);
  CHECK(buf[17] == 0x01);
  CHECK(buf[16 + 32 + 1] == 7);
  CHECK(buf[16 + 32 + 3] == 8);

  sockaddr_storage unix_addr{};
  unix_addr.ss_family = AF_UNIX;
  CHECK(write_proxy_header(proxy_version::v2, sa(unix_addr), sa(l), buf, sizeof buf) == 16);
  CHECK(buf[13] == 0x00);
}

TEST_CASE("proxy_protocol.round_trip_every_split") {
  struct pair {
    sockaddr_storage c, l;
  };
  const pair pairs[] = {{ip_port("192.0.2.7", 51234), ip_port("127.0.0.1", 8080)},
                        {ip_port("2001:db8::1", 1), ip_port("fe80::2", 65535)}};
  for (const pair& p : pairs) {
    for (proxy_version v : {proxy_version::v1, proxy_version::v2}) {
      std::uint8_t buf[proxy_header_max + 5];
      const std::size_t n = write_proxy_header(v, sa(p.c), sa(p.l), buf, proxy_header_max);
      REQUIRE(n > 0);
      std::memcpy(buf + n, "hello", 5);
      for (std::size_t have = 0; have < n; ++have) {
        proxy_header_info info;
        CHECK(parse_proxy_header(buf, have, info) == proxy_parse_status::need_more);
      }
      proxy_header_info info;
      REQUIRE(parse_proxy_header(buf, n + 5, info) == proxy_parse_status::complete);
      CHECK(info.version == v);
      CHECK(info.header_len == n);
      CHECK(info.has_addresses);
      CHECK(ip_of(info.source) == ip_of(p.c));
      CHECK(ip_of(info.destination) == ip_of(p.l));
      CHECK(port_of(info.source) == port_of(p.c));
      CHECK(port_of(info.destination) == port_of(p.l));
    }
  }
}

TEST_CASE("proxy_protocol.parse_rejects") {
  auto parse = [](std::string_view s) {
    proxy_header_info info;
    return parse_proxy_header(reinterpret_cast<const std::uint8_t*>(s.data()), s.size(), info);
  };
  CHECK(parse("GET / HTTP/1.1\r\n") == proxy_parse_status::invalid);
  CHECK(parse("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n") == proxy_parse_status::invalid);
  CHECK(parse("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n") == proxy_parse_status::invalid);
  CHECK(parse("PROXY TCP4 ::1 ::1 1 2\r\n") == proxy_parse_status::invalid);
  CHECK(parse("PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n") == proxy_parse_status::invalid);
  CHECK(parse("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n") == proxy_parse_status::invalid);
  CHECK(parse("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n") == proxy_parse_status::invalid);
  CHECK(parse("PROXY TCP4 " + std::string(120, '1')) == proxy_parse_status::invalid);
  CHECK(parse("PROXY TCP4 1.2.3.4") == proxy_parse_status::need_more);
  CHECK(parse("PRO") == proxy_parse_status::need_more);
  CHECK(parse("") == proxy_parse_status::need_more);

  proxy_header_info info;
  const std::string unknown = "PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nrest";
  REQUIRE(parse_proxy_header(reinterpret_cast<const std::uint8_t*>(unknown.data()),
                             unknown.size(), info) == proxy_parse_status::complete);
  CHECK_FALSE(info.has_addresses);
  CHECK(info.header_len == unknown.size() - 4);

  // v2: bad version nibble, bad command, a LOCAL command with a TLV body, truncated addresses.
  std::uint8_t h[16 + 12];
  std::memcpy(h, proxy_v2_signature, 12);
  h[12] = 0x11;
  h[13] = 0x11;
  h[14] = 0;
  h[15] = 12;
  CHECK(parse_proxy_header(h, sizeof h, info) == proxy_parse_status::invalid);
  h[12] = 0x22;
  CHECK(parse_proxy_header(h, sizeof h, info) == proxy_parse_status::invalid);
  h[12] = 0x20;
  REQUIRE(parse_proxy_header(h, sizeof h, info) == proxy_parse_status::complete);
  CHECK_FALSE(info.has_addresses);
  CHECK(info.header_len == 28);
  h[12] = 0x21;
  h[15] = 4;
  CHECK(parse_proxy_header(h, 20, info) == proxy_parse_status::invalid);
}

TEST_CASE("proxy_protocol.format_ip") {
  char text[ip_text_max];
  const sockaddr_storage a = ip_port("203.0.113.9", 1);
  CHECK(format_ip(sa(a), text) == 11);
  CHECK(std::string(text) == "203.0.113.9");
  const sockaddr_storage b = ip_port("::ffff:203.0.113.9", 1);
  CHECK(std::string(text, format_ip(sa(b), text)) == "203.0.113.9");
  const sockaddr_storage c = ip_port("2001:db8::5", 1);
  CHECK(std::string(text, format_ip(sa(c), text)) == "2001:db8::5");
  sockaddr_storage d{};
  d.ss_family = AF_UNIX;
  CHECK(format_ip(sa(d), text) == 0);
  CHECK(text[0] == '\0');
}
