// The master's control socket: a unix stream socket (mode 0600 in the private runtime
// directory) on which the CLI sends one command line ("restart-workers", "reload", "stop",
// "stop graceful") and reads reply lines until the last one, which starts with "ok" or
// "error". The master may answer at once or later (a restart answers once the new generation
// runs), so each request is a handle that stays valid until finish() is called.
// Only the instance's owner and root may talk to it (the peer's SO_PEERCRED uid is checked on
// accept, whatever the socket file's mode), and a client that sends no full line within
// `command_wait_ms` is answered with an error and dropped.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace wslb::supervisor {

class control_request;
using control_request_ptr = std::shared_ptr<control_request>;

class control_request : public std::enable_shared_from_this<control_request> {
 public:
  // Sends the final line ("ok ..." or "error ...") and closes the connection. Idempotent.
  void finish(bool ok, const std::string& line);
  // Sends progress before the final line: `text` is whole lines, each ending in '\n' (the
  // CLI splits the reply at newlines and reads only the last line as the outcome).
  void send(std::string text);
  // Called as each of the request's libuv handles finishes closing; the last lets it go.
  void handle_closed();

 private:
  friend class control_server;
  void close_handles();
  void stop_waiting();
  uv_pipe_t pipe_{};
  uv_timer_t command_timer_{};  // runs until the command line is complete
  int open_handles_ = 0;        // the request lets go of itself once both are closed
  bool waiting_ = false;
  std::string input_;
  class control_server* server_ = nullptr;
  char read_buffer_[256];
  bool finished_ = false;
  bool closed_ = false;
  control_request_ptr self_;  // keeps the request alive while libuv holds the handle
};

// Commands by their first word: the master registers one handler per verb, each getting the
// rest of the line ("stop graceful" -> "graceful"). Later commands are added the same way.
class command_table {
 public:
  using handler = std::function<void(const std::string& arguments, control_request_ptr)>;
  void add(std::string verb, handler h);
  // Runs the handler of `line`'s first word, or answers "unknown command".
  void dispatch(const std::string& line, control_request_ptr request) const;

 private:
  std::vector<std::pair<std::string, handler>> handlers_;
};

class control_server {
 public:
  using command_handler = std::function<void(const std::string& command, control_request_ptr)>;
  static constexpr std::uint64_t command_wait_ms = 5'000;

  // Binds `path` (replacing a stale socket file) with mode 0600, or, with `inherited_fd`, serves
  // the socket a master being upgraded passed on (bound to `path` already). `on_command` runs
  // on the master's loop. Start-up code: throws std::runtime_error on failure.
  void start(uv_loop_t* loop, const std::string& path, command_handler on_command,
             int inherited_fd = -1);
  // Closes the listening socket and, unless a new master serves it now, removes its file.
  void stop(bool remove_file = true);
  // The listening socket's descriptor (to pass on at an upgrade), or -1.
  int fd() const;

 private:
  static void on_connection(uv_stream_t* server, int status);
  static void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  uv_pipe_t server_{};
  std::string path_;
  command_handler on_command_;
  bool listening_ = false;
};

}  // namespace wslb::supervisor
