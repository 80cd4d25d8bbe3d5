#include "supervisor/socket_activation.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <vector>

#include "common/log.h"
#include "supervisor/listener.h"

namespace wslb::supervisor {

namespace {

constexpr int first_passed_fd = 3;  // SD_LISTEN_FDS_START

std::vector<std::string> split_names(const char* names) {
  std::vector<std::string> out;
  if (!names) return out;
  std::string current;
  for (const char* p = names; *p; ++p) {
    if (*p == ':') {
      out.push_back(current);
      current.clear();
    } else {
      current += *p;
    }
  }
  out.push_back(current);
  return out;
}

bool is_listening_tcp(int fd) {
  int accepting = 0, type = 0;
  socklen_t len = sizeof accepting;
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) != 0) return false;
  len = sizeof type;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) return false;
  sockaddr_storage addr{};
  len = sizeof addr;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return false;
  return accepting && type == SOCK_STREAM &&
         (addr.ss_family == AF_INET || addr.ss_family == AF_INET6);
}

// The workers wait on the listener with epoll; libuv wants the admin socket non-blocking too.
// Neither may leak into a process the master execs (none today, but a future helper might).
void make_ours(int fd) {
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  fcntl(fd, F_SETFD, FD_CLOEXEC);
}

}  // namespace

bool open_instance_sockets(const config& cfg, instance_sockets& out, std::string& error) {
  const char* pid = std::getenv("LISTEN_PID");
  const char* fds = std::getenv("LISTEN_FDS");
  const std::vector<std::string> names = split_names(std::getenv("LISTEN_FDNAMES"));
  const bool for_us = pid && fds && std::atoll(pid) == getpid();
  const int count = for_us ? std::atoi(fds) : 0;
  unsetenv("LISTEN_PID");
  unsetenv("LISTEN_FDS");
  unsetenv("LISTEN_FDNAMES");
  const auto fail = [&](const std::string& why) {
    for (int fd : {out.listener, out.admin}) {
      if (fd >= 0) close(fd);
    }
    out = {};
    error = why;
    return false;
  };
  if (count < 0 || count > 2) {
    return fail("socket activation passed " + std::to_string(count) +
                " sockets; wslb takes the listener and at most the admin listener");
  }
  for (int i = 0; i < count; ++i) {
    const int fd = first_passed_fd + i;
    const std::string name = static_cast<std::size_t>(i) < names.size() ? names[i] : "";
    if (!is_listening_tcp(fd)) {
      return fail("socket activation: descriptor " + std::to_string(fd) +
                  (name.empty() ? "" : " ('" + name + "')") + " is not a listening TCP socket");
    }
    make_ours(fd);
    // systemd names a socket "unknown" when its unit gave no FileDescriptorName=.
    const bool unnamed = name.empty() || name == "unknown";
    const bool admin = unnamed ? i == 1 : name == "admin";
    if (admin && !cfg.admin.enabled) {
      return fail("socket activation passed an admin socket but --admin is not set");
    }
    (admin ? out.admin : out.listener) = fd;
  }
  out.inherited = count > 0;
  if (out.inherited) {
    log_line("master", "socket activation: %d socket(s) passed (listener %s, admin %s)", count,
             out.listener >= 0 ? "passed" : "bound here", out.admin >= 0 ? "passed" : "-");
  }
  try {
    if (out.listener < 0) out.listener = open_listener(cfg.listen);
  } catch (const std::exception& e) {
    return fail(e.what());
  }
  try {
    if (cfg.admin.enabled && out.admin < 0) out.admin = open_listener(cfg.admin.where);
  } catch (const std::exception& e) {
    return fail(std::string("admin listener: ") + e.what());
  }
  return true;
}

}  // namespace wslb::supervisor
