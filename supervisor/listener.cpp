#include "supervisor/listener.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>

namespace wslb::supervisor {

namespace {
int kernel_backlog_limit() {
  std::ifstream f("/proc/sys/net/core/somaxconn");
  int n = 0;
  return (f >> n) && n > 0 ? n : 4096;
}
}  // namespace

int open_listener(const endpoint& where) {
  const auto fail = [&where] {
    return std::runtime_error("cannot listen on " + where.to_string() + ": " + strerror(errno));
  };
  const int fd = socket(where.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw fail();
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, reinterpret_cast<const sockaddr*>(&where.addr), where.addr_len) != 0 ||
      listen(fd, kernel_backlog_limit()) != 0) {
    const std::runtime_error error = fail();
    close(fd);
    throw error;
  }
  return fd;
}

}  // namespace wslb::supervisor
