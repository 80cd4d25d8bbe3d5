// The PROXY protocol (HAProxy's spec, versions 1 and 2) that wslb can put in front of the bytes
// it sends to a backend, so the backend learns the real client address. The worker writes the
// header (write_proxy_header) right after connecting, before anything else; the demo echo
// backend and the tests read it back (parse_proxy_header).
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>

namespace wslb::protocol {

enum class proxy_version : std::uint8_t { v1, v2 };

// Largest headers we write: v1 "PROXY TCP6 <39> <39> 65535 65535\r\n" is at most 107 bytes by
// the spec; v2 is 16 bytes plus 36 of IPv6 addresses and ports (we add no TLVs).
inline constexpr std::size_t proxy_v1_max = 107;
inline constexpr std::size_t proxy_v2_max = 16 + 36;
inline constexpr std::size_t proxy_header_max = proxy_v1_max;

// The 12-byte signature that starts every v2 header.
inline constexpr std::uint8_t proxy_v2_signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                                        0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

// Writes a PROXY header for a TCP connection from `client` (the accepted socket's peer) to
// `local` (the address the client connected to, getsockname of the accepted socket) into `out`
// and returns its length, or 0 when `cap` is too small. No allocation.
// IPv4-mapped IPv6 addresses are written as IPv4; when both ends are IPv4 the header says
// TCP4 (v2: AF_INET), otherwise TCP6 (an IPv4 end is then written IPv4-mapped). A family other
// than AF_INET/AF_INET6 gives "PROXY UNKNOWN\r\n" (v1) or a PROXY command with AF_UNSPEC (v2),
// which tells the backend to use the connection's own addresses.
std::size_t write_proxy_header(proxy_version v, const sockaddr* client, const sockaddr* local,
                               std::uint8_t* out, std::size_t cap);

// Longest text format_ip writes, with its NUL.
inline constexpr std::size_t ip_text_max = INET6_ADDRSTRLEN;

// Writes the address of `addr` as text without port ("192.0.2.1", "2001:db8::1"; an
// IPv4-mapped IPv6 address as IPv4) and a NUL into `out` (at least ip_text_max bytes);
// returns its length, 0 for another family. For X-Forwarded-For and logs.
std::size_t format_ip(const sockaddr* addr, char* out);

enum class proxy_parse_status { need_more, complete, invalid };

struct proxy_header_info {
  proxy_version version = proxy_version::v1;
  // False for v1 "UNKNOWN", a v2 LOCAL command, or a v2 family other than TCP over IPv4/IPv6:
  // the receiver then uses the connection's own addresses.
  bool has_addresses = false;
  sockaddr_storage source{};       // the client
  sockaddr_storage destination{};  // where the client connected to
  std::size_t header_len = 0;      // bytes to skip before the payload
};

// Reads a v1 or v2 header at the start of `data`. need_more while what is there is a valid
// beginning of one; invalid when the bytes cannot be a PROXY header (or a v1 line runs past
// 107 bytes). Used by the demo echo backend and tests; never throws.
proxy_parse_status parse_proxy_header(const std::uint8_t* data, std::size_t len,
                                      proxy_header_info& out);

}  // namespace wslb::protocol
