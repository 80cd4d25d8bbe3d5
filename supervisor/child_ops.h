// The seam between the master's decisions and the processes they act on: forking a child with
// a channel, signalling, reaping and sending it a message all go through child_ops. The master
// runs process_ops (real fork, kill, waitpid, socketpairs watched on its loop); the unit tests
// run a recording fake and drive restarts, reloads, respawns and drains without processes.
#pragma once

#include <sys/types.h>
#include <sys/wait.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <cstring>
#include <string>

#include "shm/layout.h"

namespace wslb::supervisor {

// Children are named by an id: a worker by its slot (its table row), other children from
// first_helper_id on (the checker, and any later helper process).
using child_id = std::size_t;
inline constexpr child_id first_helper_id = shm::max_worker_slots;
inline constexpr child_id checker_id = first_helper_id;

// What to fork.
struct child_spec {
  child_id id = 0;
  std::string what;    // names the child in log lines: "worker 3", "the checker"
  int extra_fd = -1;   // a descriptor the child keeps besides its channel (the listener), or -1
  // Runs in the child with its end of the channel; returns the child's exit code.
  std::function<int(int channel_fd)> body;
  bool is_worker() const { return id < first_helper_id; }
};

// A child that has exited, as waitpid reported it.
struct exited_child {
  pid_t pid = 0;
  int status = 0;  // waitpid status word
};

// "exit code 3", "exit code 78 (fatal configuration)" or "killed by signal Killed", for log
// lines and replies.
inline std::string describe_exit(int status) {
  if (WIFSIGNALED(status)) return std::string("killed by signal ") + strsignal(WTERMSIG(status));
  const int code = WEXITSTATUS(status);
  return "exit code " + std::to_string(code) + (code == 78 ? " (fatal configuration)" : "");
}

// What the master hears from its children's channels.
class child_events {
 public:
  virtual ~child_events() = default;
  // Child `id` sent message byte `message` (common/child_channel.h).
  virtual void on_child_message(child_id id, char message) = 0;
};

class child_ops {
 public:
  virtual ~child_ops() = default;
  // Forks `spec` with a new channel (closing any channel `spec.id` still had). Returns the
  // child's pid, or -1 after logging why.
  virtual pid_t spawn(const child_spec& spec) = 0;
  // Sends one message byte to child `id`. A full or broken channel is ignored: the child is
  // gone or going, and its exit is reaped.
  virtual void send(child_id id, char message) = 0;
  virtual void kill(pid_t pid, int signum) = 0;
  // One exited child (waitpid(-1, WNOHANG)), or nullopt when none is waiting.
  virtual std::optional<exited_child> reap() = 0;
  // Closes the channel of child `id` (it exited, or the master stops).
  virtual void close_channel(child_id id) = 0;
};

// Milliseconds now on both clocks: monotonic for the master's own deadlines, Unix time for
// what the table shows other processes. The master reads the real clocks; tests make them up.
struct clock_reading {
  std::int64_t monotonic_ms = 0;
  std::int64_t unix_ms = 0;
};

}  // namespace wslb::supervisor
