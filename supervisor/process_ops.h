// The real child_ops: fork_child with a SOCK_SEQPACKET socketpair per child, the master's end
// watched on the master's libuv loop, kill(2) and waitpid(-1, WNOHANG). Master only.
#pragma once

#include <uv.h>

#include <array>

#include "supervisor/child_ops.h"

namespace wslb::supervisor {

class process_ops : public child_ops {
 public:
  // Messages from children are delivered to `events` from `loop`.
  process_ops(uv_loop_t* loop, child_events& events) : loop_(loop), events_(events) {}
  process_ops(const process_ops&) = delete;
  process_ops& operator=(const process_ops&) = delete;

  pid_t spawn(const child_spec& spec) override;
  void send(child_id id, char message) override;
  void kill(pid_t pid, int signum) override;
  std::optional<exited_child> reap() override;
  void close_channel(child_id id) override;
  // Closes every channel; the master's last act before its loop ends.
  void close_all_channels();

 private:
  // Watches one child's end of the channel. Heap-allocated per spawn: a closing uv handle
  // must outlive its close callback, and a slot may be respawned before that callback runs.
  struct channel_watch {
    uv_poll_t poll;
    process_ops* owner;
    child_id id;
    int fd;
  };
  static constexpr std::size_t max_children = first_helper_id + 8;
  void on_readable(channel_watch& w);

  uv_loop_t* loop_;
  child_events& events_;
  std::array<channel_watch*, max_children> channels_{};
};

}  // namespace wslb::supervisor
