#include "common/resolve.h"

#include <arpa/inet.h>
#include <netdb.h>

#include <cerrno>
#include <cstring>

namespace wslb {

bool fill_numeric_address(endpoint& where) {
  std::memset(&where.addr, 0, sizeof where.addr);
  auto* v4 = reinterpret_cast<sockaddr_in*>(&where.addr);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&where.addr);
  if (inet_pton(AF_INET, where.host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(where.port);
    where.addr_len = sizeof(sockaddr_in);
    return true;
  }
  if (inet_pton(AF_INET6, where.host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(where.port);
    where.addr_len = sizeof(sockaddr_in6);
    return true;
  }
  where.addr_len = 0;
  return false;
}

bool resolve_endpoint(endpoint& where, std::string& error) {
  if (fill_numeric_address(where)) return true;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  // No AI_ADDRCONFIG: it hides every address of a family the host has no non-loopback address
  // for, so "localhost" would not resolve on a machine with only a loopback interface.
  hints.ai_flags = 0;
  addrinfo* found = nullptr;
  // No service: the port is ours already, and naming it would only add a services lookup.
  const int rc = getaddrinfo(where.host.c_str(), nullptr, &hints, &found);
  if (rc != 0 || found == nullptr) {
    const std::string reason = rc == EAI_SYSTEM ? std::strerror(errno) : gai_strerror(rc);
    error = "cannot resolve '" + where.host + "' (" + (rc == 0 ? "no address" : reason) + ")";
    if (found) freeaddrinfo(found);
    return false;
  }
  std::memset(&where.addr, 0, sizeof where.addr);
  std::memcpy(&where.addr, found->ai_addr, found->ai_addrlen);
  where.addr_len = found->ai_addrlen;
  freeaddrinfo(found);
  if (where.addr.ss_family == AF_INET) {
    reinterpret_cast<sockaddr_in*>(&where.addr)->sin_port = htons(where.port);
  } else if (where.addr.ss_family == AF_INET6) {
    reinterpret_cast<sockaddr_in6*>(&where.addr)->sin6_port = htons(where.port);
  } else {
    error = "cannot resolve '" + where.host + "' (no IPv4/IPv6 address)";
    where.addr_len = 0;
    return false;
  }
  return true;
}

}  // namespace wslb
