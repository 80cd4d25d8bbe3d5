// The frame of a helper process that the master forks besides the workers (the health checker,
// the cluster agent): a brand-new libuv loop that runs until the master goes away (EOF on the
// channel), asks it to stop (msg_stop or msg_drain), or sends SIGTERM; the kernel sends that
// SIGTERM when the master dies. Called in the child, right after fork.
#pragma once

#include <uv.h>

#include <functional>

namespace wslb {

class helper_loop {
 public:
  // `who` names the process in log lines ("checker"); `master_fd` is its end of the channel
  // (or -1: nothing to watch).
  helper_loop(const char* who, int master_fd) : who_(who), master_fd_(master_fd) {}
  helper_loop(const helper_loop&) = delete;
  helper_loop& operator=(const helper_loop&) = delete;

  // Sets the signal dispositions and makes the loop; false, after logging why, when it cannot.
  bool open();
  uv_loop_t* loop() { return &loop_; }

  // Runs the loop. When a stop comes, `close_handles` must close every handle the caller
  // opened on the loop; the loop then ends. Returns the process's exit code.
  int run(std::function<void()> close_handles);
  // Ends the process's work from inside (the same path as a stop from the master).
  void stop(const char* why);

 private:
  static void on_master_readable(uv_poll_t* h, int status, int events);
  static void on_signal_readable(uv_poll_t* h, int status, int events);

  const char* who_;
  int master_fd_;
  int signal_fd_ = -1;
  uv_loop_t loop_{};
  uv_poll_t master_watch_{};
  uv_poll_t signal_watch_{};
  bool watching_master_ = false;
  bool stopping_ = false;
  std::function<void()> close_handles_;
};

}  // namespace wslb
