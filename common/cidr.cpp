#include "common/cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <charconv>
#include <cstring>

namespace wslb {

namespace {

bool bits_match(const std::uint8_t* a, const std::uint8_t* b, unsigned prefix) {
  const unsigned whole = prefix / 8;
  if (std::memcmp(a, b, whole) != 0) return false;
  const unsigned rest = prefix % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<std::uint8_t>(0xFF << (8 - rest));
  return (a[whole] & mask) == (b[whole] & mask);
}

bool parse_one(std::string_view text, cidr& out, std::string& error) {
  const std::size_t slash = text.find('/');
  const std::string addr(text.substr(0, slash));
  cidr c;
  unsigned max_prefix = 0;
  if (inet_pton(AF_INET, addr.c_str(), c.bytes.data()) == 1) {
    c.family = AF_INET;
    max_prefix = 32;
  } else if (inet_pton(AF_INET6, addr.c_str(), c.bytes.data()) == 1) {
    c.family = AF_INET6;
    max_prefix = 128;
  } else {
    error = "'" + std::string(text) + "' is not an IPv4 or IPv6 address (with an optional /PREFIX)";
    return false;
  }
  c.prefix = max_prefix;
  if (slash != std::string_view::npos) {
    const std::string_view p = text.substr(slash + 1);
    const auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), c.prefix);
    if (p.empty() || ec != std::errc{} || end != p.data() + p.size() || c.prefix > max_prefix) {
      error = "'" + std::string(text) + "' has a prefix length that is not 0-" +
              std::to_string(max_prefix);
      return false;
    }
  }
  cidr masked = c;
  for (unsigned bit = c.prefix; bit < max_prefix; ++bit) {
    masked.bytes[bit / 8] &= static_cast<std::uint8_t>(~(0x80u >> (bit % 8)));
  }
  if (masked.bytes != c.bytes) {
    error = "'" + std::string(text) + "' has host bits set below its /" +
            std::to_string(c.prefix) + " prefix";
    return false;
  }
  out = c;
  return true;
}

}  // namespace

bool cidr::contains(const sockaddr* addr) const {
  static constexpr std::uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
  if (addr->sa_family == AF_INET) {
    if (family != AF_INET) return false;
    const auto* in = reinterpret_cast<const sockaddr_in*>(addr);
    return bits_match(reinterpret_cast<const std::uint8_t*>(&in->sin_addr), bytes.data(), prefix);
  }
  if (addr->sa_family != AF_INET6) return false;
  const auto* in6 = reinterpret_cast<const sockaddr_in6*>(addr);
  const std::uint8_t* a = in6->sin6_addr.s6_addr;
  if (family == AF_INET6) return bits_match(a, bytes.data(), prefix);
  return std::memcmp(a, v4_mapped, sizeof v4_mapped) == 0 &&
         bits_match(a + 12, bytes.data(), prefix);
}

bool parse_cidr_list(std::string_view text, std::vector<cidr>& out, std::string& error) {
  std::vector<cidr> list;
  while (!text.empty()) {
    const std::size_t comma = text.find(',');
    const std::string_view item = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
    cidr c;
    if (!parse_one(item, c, error)) return false;
    list.push_back(c);
  }
  out = std::move(list);
  return true;
}

bool in_any(const std::vector<cidr>& list, const sockaddr* addr) {
  for (const cidr& c : list) {
    if (c.contains(addr)) return true;
  }
  return false;
}

}  // namespace wslb
