// Telling systemd how the service is doing (sd_notify's protocol, written by hand: one
// datagram of "KEY=value" lines to the unix socket named by $NOTIFY_SOCKET). Without
// NOTIFY_SOCKET every call does nothing. Sends never block the master: the socket is
// non-blocking and a datagram systemd could not take is dropped, as sd_notify does.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace wslb::supervisor {

class systemd_notifier {
 public:
  // Reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID, then removes them from the
  // environment (they are this process's, not its children's). Connects to the socket now,
  // while the process may still have the rights to (before a privilege drop). Master only.
  void open_from_environment();
  bool enabled() const { return fd_ >= 0; }

  // Sends `state`, newline-separated assignments ("READY=1\nSTATUS=...").
  void send(const std::string& state);
  // What a successor master started by `wslb upgrade` needs in its environment to notify the
  // same way ("NOTIFY_SOCKET=...", "WATCHDOG_USEC=..."): none when not notifying.
  std::vector<std::string> successor_environment() const;
  // Sends WATCHDOG=1 when the watchdog is on and half its interval has passed since the last.
  void keep_watchdog_fed(std::int64_t now_monotonic_ms);

  ~systemd_notifier();

 private:
  int fd_ = -1;
  std::string socket_path_;
  std::string watchdog_usec_;
  std::int64_t watchdog_ms_ = 0;
  std::int64_t last_watchdog_ms_ = 0;
};

// "MONOTONIC_USEC=<now>": what RELOADING=1 carries, so systemd orders the reload's messages.
std::string monotonic_usec_assignment();

}  // namespace wslb::supervisor
