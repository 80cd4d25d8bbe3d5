#include "supervisor/systemd_notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>

#include "common/log.h"

namespace wslb::supervisor {

void systemd_notifier::open_from_environment() {
  const char* path = std::getenv("NOTIFY_SOCKET");
  const char* watchdog_usec = std::getenv("WATCHDOG_USEC");
  const char* watchdog_pid = std::getenv("WATCHDOG_PID");
  if (watchdog_usec && (!watchdog_pid || std::atoll(watchdog_pid) == getpid())) {
    watchdog_ms_ = std::atoll(watchdog_usec) / 1000;
    watchdog_usec_ = watchdog_usec;
  }
  const std::string socket_path = path ? path : "";
  unsetenv("NOTIFY_SOCKET");
  unsetenv("WATCHDOG_USEC");
  unsetenv("WATCHDOG_PID");
  if (socket_path.empty()) return;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  // '@' names a socket in the abstract namespace: its name starts with a NUL byte.
  if ((socket_path[0] != '/' && socket_path[0] != '@') ||
      socket_path.size() >= sizeof addr.sun_path) {
    log_line("master", "NOTIFY_SOCKET '%s' is not a socket path; not notifying systemd",
             socket_path.c_str());
    return;
  }
  std::memcpy(addr.sun_path, socket_path.data(), socket_path.size());
  if (socket_path[0] == '@') addr.sun_path[0] = '\0';
  const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + socket_path.size());
  fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd_ >= 0 && connect(fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    log_line("master", "cannot reach NOTIFY_SOCKET %s: %s; not notifying systemd",
             socket_path.c_str(), strerror(errno));
    close(fd_);
    fd_ = -1;
  }
  if (fd_ >= 0) socket_path_ = socket_path;
}

std::vector<std::string> systemd_notifier::successor_environment() const {
  if (fd_ < 0) return {};
  std::vector<std::string> out{"NOTIFY_SOCKET=" + socket_path_};
  // Without WATCHDOG_PID: the successor is to be the main pid, whose watchdog it feeds.
  if (!watchdog_usec_.empty()) out.push_back("WATCHDOG_USEC=" + watchdog_usec_);
  return out;
}

void systemd_notifier::send(const std::string& state) {
  if (fd_ < 0) return;
  // A full socket buffer (systemd busy) loses this message, never stalls the master.
  (void)::send(fd_, state.data(), state.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
}

void systemd_notifier::keep_watchdog_fed(std::int64_t now) {
  if (fd_ < 0 || watchdog_ms_ <= 0 || now - last_watchdog_ms_ < watchdog_ms_ / 2) return;
  last_watchdog_ms_ = now;
  send("WATCHDOG=1");
}

systemd_notifier::~systemd_notifier() {
  if (fd_ >= 0) close(fd_);
}

std::string monotonic_usec_assignment() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  const long long usec = static_cast<long long>(ts.tv_sec) * 1'000'000 + ts.tv_nsec / 1000;
  return "MONOTONIC_USEC=" + std::to_string(usec);
}

}  // namespace wslb::supervisor
