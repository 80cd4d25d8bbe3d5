// The master's control socket: a unix stream socket (mode 0600 in the private runtime
// directory) on which the CLI sends one command line ("restart-workers", "reload", "stop",
// "stop graceful") and reads reply lines until the last one, which starts with "ok" or
// "error". The master may answer at once or later (a restart answers once the new generation
// runs), so each request is a handle that stays valid until finish() is called.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <string>

namespace wslb::supervisor {

class control_request;
using control_request_ptr = std::shared_ptr<control_request>;

class control_request : public std::enable_shared_from_this<control_request> {
 public:
  // Sends the final line ("ok ..." or "error ...") and closes the connection. Idempotent.
  void finish(bool ok, const std::string& line);
  // Drops the request's hold on itself; called once its pipe is closed.
  void release() { self_.reset(); }

 private:
  friend class control_server;
  void send(std::string text);
  uv_pipe_t pipe_{};
  std::string input_;
  class control_server* server_ = nullptr;
  char read_buffer_[256];
  bool finished_ = false;
  bool closed_ = false;
  control_request_ptr self_;  // keeps the request alive while libuv holds the handle
};

class control_server {
 public:
  using command_handler = std::function<void(const std::string& command, control_request_ptr)>;

  // Binds `path` (replacing a stale socket file) with mode 0600. Returns false and fills
  // `error` on failure. `on_command` runs on the master's loop.
  bool start(uv_loop_t* loop, const std::string& path, command_handler on_command,
             std::string& error);
  // Closes the listening socket and removes its file.
  void stop();

 private:
  static void on_connection(uv_stream_t* server, int status);
  static void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  uv_pipe_t server_{};
  std::string path_;
  command_handler on_command_;
  bool listening_ = false;
};

}  // namespace wslb::supervisor
