#include "protocol/proxy_protocol.h"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <string_view>

namespace wslb::protocol {

namespace {

// One end of the connection, IPv4-mapped IPv6 turned back into IPv4.
struct ip_end {
  int family = AF_UNSPEC;
  std::uint8_t addr[16] = {};
  std::uint16_t port = 0;  // host order
};

constexpr std::uint8_t v4_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};

ip_end end_of(const sockaddr* sa) {
  ip_end e;
  if (sa == nullptr) return e;
  if (sa->sa_family == AF_INET) {
    sockaddr_in in;
    std::memcpy(&in, sa, sizeof in);
    e.family = AF_INET;
    std::memcpy(e.addr, &in.sin_addr, 4);
    e.port = ntohs(in.sin_port);
  } else if (sa->sa_family == AF_INET6) {
    sockaddr_in6 in6;
    std::memcpy(&in6, sa, sizeof in6);
    e.port = ntohs(in6.sin6_port);
    if (std::memcmp(in6.sin6_addr.s6_addr, v4_mapped_prefix, 12) == 0) {
      e.family = AF_INET;
      std::memcpy(e.addr, in6.sin6_addr.s6_addr + 12, 4);
    } else {
      e.family = AF_INET6;
      std::memcpy(e.addr, in6.sin6_addr.s6_addr, 16);
    }
  }
  return e;
}

// An IPv4 end written into a TCP6 header as IPv4-mapped IPv6.
void widen(ip_end& e) {
  if (e.family != AF_INET) return;
  std::uint8_t v4[4];
  std::memcpy(v4, e.addr, 4);
  std::memcpy(e.addr, v4_mapped_prefix, 12);
  std::memcpy(e.addr + 12, v4, 4);
  e.family = AF_INET6;
}

struct text_buf {
  char* p;
  char* end;
  bool ok = true;
  void put(std::string_view s) {
    if (static_cast<std::size_t>(end - p) < s.size()) {
      ok = false;
      return;
    }
    std::memcpy(p, s.data(), s.size());
    p += s.size();
  }
  void put_ip(const ip_end& e) {
    char text[INET6_ADDRSTRLEN];
    if (inet_ntop(e.family, e.addr, text, sizeof text) == nullptr) {
      ok = false;
      return;
    }
    put(text);
  }
  void put_port(std::uint16_t port) {
    char text[8];
    const auto r = std::to_chars(text, text + sizeof text, port);
    put(std::string_view(text, static_cast<std::size_t>(r.ptr - text)));
  }
};

std::size_t write_v1(const ip_end& src, const ip_end& dst, std::uint8_t* out, std::size_t cap) {
  char line[proxy_v1_max + 1];
  text_buf b{line, line + sizeof line};
  if (src.family == AF_UNSPEC || dst.family == AF_UNSPEC) {
    b.put("PROXY UNKNOWN\r\n");
  } else {
    b.put(src.family == AF_INET ? "PROXY TCP4 " : "PROXY TCP6 ");
    b.put_ip(src);
    b.put(" ");
    b.put_ip(dst);
    b.put(" ");
    b.put_port(src.port);
    b.put(" ");
    b.put_port(dst.port);
    b.put("\r\n");
  }
  const auto n = static_cast<std::size_t>(b.p - line);
  if (!b.ok || n > cap) return 0;
  std::memcpy(out, line, n);
  return n;
}

std::size_t write_v2(const ip_end& src, const ip_end& dst, std::uint8_t* out, std::size_t cap) {
  const bool unspec = src.family == AF_UNSPEC || dst.family == AF_UNSPEC;
  const std::size_t addr_len = unspec ? 0 : (src.family == AF_INET ? 12 : 36);
  const std::size_t total = 16 + addr_len;
  if (total > cap) return 0;
  std::memcpy(out, proxy_v2_signature, 12);
  out[12] = 0x21;  // version 2, PROXY command
  out[13] = unspec ? 0x00 : (src.family == AF_INET ? 0x11 : 0x21);  // family | STREAM
  out[14] = static_cast<std::uint8_t>(addr_len >> 8);
  out[15] = static_cast<std::uint8_t>(addr_len);
  if (unspec) return total;
  const std::size_t alen = src.family == AF_INET ? 4 : 16;
  std::uint8_t* p = out + 16;
  std::memcpy(p, src.addr, alen);
  std::memcpy(p + alen, dst.addr, alen);
  p += 2 * alen;
  p[0] = static_cast<std::uint8_t>(src.port >> 8);
  p[1] = static_cast<std::uint8_t>(src.port);
  p[2] = static_cast<std::uint8_t>(dst.port >> 8);
  p[3] = static_cast<std::uint8_t>(dst.port);
  return total;
}

void store(sockaddr_storage& out, int family, const std::uint8_t* addr, std::uint16_t port) {
  std::memset(&out, 0, sizeof out);
  if (family == AF_INET) {
    sockaddr_in in{};
    in.sin_family = AF_INET;
    in.sin_port = htons(port);
    std::memcpy(&in.sin_addr, addr, 4);
    std::memcpy(&out, &in, sizeof in);
  } else {
    sockaddr_in6 in6{};
    in6.sin6_family = AF_INET6;
    in6.sin6_port = htons(port);
    std::memcpy(in6.sin6_addr.s6_addr, addr, 16);
    std::memcpy(&out, &in6, sizeof in6);
  }
}

// A v1 port: 1 to 5 decimal digits, at most 65535, no leading zero (the spec's form).
bool parse_port(std::string_view s, std::uint16_t& port) {
  if (s.empty() || s.size() > 5 || (s.size() > 1 && s[0] == '0')) return false;
  unsigned v = 0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc{} || r.ptr != s.data() + s.size() || v > 65535) return false;
  port = static_cast<std::uint16_t>(v);
  return true;
}

bool parse_addr(std::string_view s, int family, std::uint8_t* addr) {
  char text[INET6_ADDRSTRLEN];
  if (s.empty() || s.size() >= sizeof text) return false;
  std::memcpy(text, s.data(), s.size());
  text[s.size()] = '\0';
  return inet_pton(family, text, addr) == 1;
}

proxy_parse_status parse_v1(const std::uint8_t* data, std::size_t len, proxy_header_info& out) {
  const std::string_view all(reinterpret_cast<const char*>(data), std::min(len, proxy_v1_max));
  const std::size_t crlf = all.find("\r\n");
  if (crlf == std::string_view::npos) {
    return len < proxy_v1_max ? proxy_parse_status::need_more : proxy_parse_status::invalid;
  }
  std::string_view line = all.substr(0, crlf);
  std::string_view fields[6];
  std::size_t n = 0;
  while (!line.empty() && n < 6) {
    const std::size_t sp = line.find(' ');
    fields[n++] = line.substr(0, sp);
    line = sp == std::string_view::npos ? std::string_view{} : line.substr(sp + 1);
  }
  out = proxy_header_info{};
  out.version = proxy_version::v1;
  out.header_len = crlf + 2;
  if (n >= 2 && fields[0] == "PROXY" && fields[1] == "UNKNOWN") {
    return proxy_parse_status::complete;  // anything may follow UNKNOWN up to the CRLF
  }
  if (n != 6 || !line.empty() || fields[0] != "PROXY") return proxy_parse_status::invalid;
  int family;
  if (fields[1] == "TCP4") {
    family = AF_INET;
  } else if (fields[1] == "TCP6") {
    family = AF_INET6;
  } else {
    return proxy_parse_status::invalid;
  }
  std::uint8_t src[16];
  std::uint8_t dst[16];
  std::uint16_t sport;
  std::uint16_t dport;
  if (!parse_addr(fields[2], family, src) || !parse_addr(fields[3], family, dst) ||
      !parse_port(fields[4], sport) || !parse_port(fields[5], dport)) {
    return proxy_parse_status::invalid;
  }
  store(out.source, family, src, sport);
  store(out.destination, family, dst, dport);
  out.has_addresses = true;
  return proxy_parse_status::complete;
}

proxy_parse_status parse_v2(const std::uint8_t* data, std::size_t len, proxy_header_info& out) {
  if (len < 16) return proxy_parse_status::need_more;
  const std::uint8_t ver_cmd = data[12];
  if ((ver_cmd >> 4) != 2 || (ver_cmd & 0x0F) > 1) return proxy_parse_status::invalid;
  const std::size_t body = (std::size_t{data[14]} << 8) | data[15];
  if (len < 16 + body) return proxy_parse_status::need_more;
  out = proxy_header_info{};
  out.version = proxy_version::v2;
  out.header_len = 16 + body;
  const bool proxy_cmd = (ver_cmd & 0x0F) == 1;
  const std::uint8_t fam = data[13];
  const std::uint8_t* p = data + 16;
  if (proxy_cmd && fam == 0x11) {
    if (body < 12) return proxy_parse_status::invalid;
    store(out.source, AF_INET, p, static_cast<std::uint16_t>((p[8] << 8) | p[9]));
    store(out.destination, AF_INET, p + 4, static_cast<std::uint16_t>((p[10] << 8) | p[11]));
    out.has_addresses = true;
  } else if (proxy_cmd && fam == 0x21) {
    if (body < 36) return proxy_parse_status::invalid;
    store(out.source, AF_INET6, p, static_cast<std::uint16_t>((p[32] << 8) | p[33]));
    store(out.destination, AF_INET6, p + 16, static_cast<std::uint16_t>((p[34] << 8) | p[35]));
    out.has_addresses = true;
  }
  return proxy_parse_status::complete;
}

}  // namespace

std::size_t write_proxy_header(proxy_version v, const sockaddr* client, const sockaddr* local,
                               std::uint8_t* out, std::size_t cap) {
  ip_end src = end_of(client);
  ip_end dst = end_of(local);
  if (src.family != AF_UNSPEC && dst.family != AF_UNSPEC && src.family != dst.family) {
    widen(src);
    widen(dst);
  }
  return v == proxy_version::v1 ? write_v1(src, dst, out, cap) : write_v2(src, dst, out, cap);
}

std::size_t format_ip(const sockaddr* addr, char* out) {
  const ip_end e = end_of(addr);
  if (e.family == AF_UNSPEC || inet_ntop(e.family, e.addr, out, ip_text_max) == nullptr) {
    out[0] = '\0';
    return 0;
  }
  return std::strlen(out);
}

proxy_parse_status parse_proxy_header(const std::uint8_t* data, std::size_t len,
                                      proxy_header_info& out) {
  // Decide which version from as many leading bytes as we have; a prefix of either signature
  // needs more bytes, anything else is not a PROXY header.
  static constexpr std::string_view v1_start = "PROXY ";
  const std::size_t v1_have = std::min(len, v1_start.size());
  if (len > 0 && std::memcmp(data, v1_start.data(), v1_have) == 0) {
    return len < v1_start.size() ? proxy_parse_status::need_more : parse_v1(data, len, out);
  }
  const std::size_t v2_have = std::min(len, sizeof proxy_v2_signature);
  if (len > 0 && std::memcmp(data, proxy_v2_signature, v2_have) == 0) {
    return len < sizeof proxy_v2_signature ? proxy_parse_status::need_more
                                           : parse_v2(data, len, out);
  }
  return len == 0 ? proxy_parse_status::need_more : proxy_parse_status::invalid;
}

}  // namespace wslb::protocol
