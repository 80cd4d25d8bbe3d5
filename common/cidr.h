// Address ranges for --trusted-proxies ("10.0.0.0/8", "2001:db8::/32", "192.0.2.7"), parsed
// once by the master and matched by the workers against each client's address.
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace wslb {

struct cidr {
  int family = 0;                        // AF_INET or AF_INET6
  std::array<std::uint8_t, 16> bytes{};  // network address (4 bytes used for IPv4)
  unsigned prefix = 0;                   // leading bits that must match

  // True when `addr` (sockaddr_in or sockaddr_in6) lies in the range. An IPv4-mapped IPv6
  // address (::ffff:10.0.0.1, what a dual-stack listener reports) matches as its IPv4 address.
  bool contains(const sockaddr* addr) const;
  bool operator==(const cidr&) const = default;
};

// "CIDR[,CIDR...]" with each CIDR an IPv4 or IPv6 address, optionally "/PREFIX" (a host when
// absent). Host bits set below the prefix are refused ("10.0.0.1/8": say 10.0.0.0/8), as a typo
// would otherwise trust more than meant. Returns false with `error` set.
bool parse_cidr_list(std::string_view text, std::vector<cidr>& out, std::string& error);

// True when any range of `list` contains `addr`.
bool in_any(const std::vector<cidr>& list, const sockaddr* addr);

}  // namespace wslb
