// Test support: listening TCP sockets on 127.0.0.1 and an ephemeral port. Nothing accepts on
// them unless the test does: connects complete in the backlog, so a peer that connects and
// waits for an answer sees a black hole.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <doctest/doctest.h>

namespace wslb::testing {

// Binds and listens; fills `port` and returns the fd (the caller closes it).
inline int listen_on_loopback(int& port, bool nonblocking = false) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0);
  REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(listen(fd, 128) == 0);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  port = ntohs(a.sin_port);
  return fd;
}

// The same, closed when it goes out of scope.
struct loopback_listener {
  int port = 0;  // before fd: fd's initializer fills it
  int fd = listen_on_loopback(port);
  loopback_listener() = default;
  loopback_listener(const loopback_listener&) = delete;
  loopback_listener& operator=(const loopback_listener&) = delete;
  ~loopback_listener() { close(fd); }
};

}  // namespace wslb::testing
