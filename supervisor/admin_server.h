// The admin listener's transport: a TCP server on the master's libuv loop that reads one
// bounded request head per connection, hands it to a handler that answers at once, writes the
// answer and closes. It never blocks the loop: reads and writes are libuv's, a client that is
// slow to send its head or to read the answer is dropped at a deadline, and a flood of clients
// beyond a fixed number is turned away at accept.
#pragma once

#include <uv.h>

#include <cstddef>
#include <functional>
#include <set>
#include <string>

#include "supervisor/admin_http.h"

namespace wslb::supervisor {

// How long a client has from its connect to its last byte of answer read.
inline constexpr std::uint64_t admin_client_deadline_ms = 5'000;
// Clients served at once; more are closed at accept.
inline constexpr std::size_t max_admin_clients = 64;

class admin_server {
 public:
  using handler = std::function<admin_response(const admin_request&)>;

  // Serves the listening socket `fd` (bound by the master, or passed by systemd); owns it from
  // now on. Answers 401 to a request without `token` (when not empty) and passes the others
  // to `on_request`, which runs on the master's loop. Returns false with `error`.
  bool start(uv_loop_t* loop, int fd, std::string token, handler on_request,
             std::string& error);
  // Closes the listener and every client still connected.
  void stop();
  // Closes this process's listening handle only: the clients connected go on being answered
  // (after an upgrade the successor's copy of the socket takes the new ones).
  void stop_listening();
  // The port actually bound (useful with port 0), or 0 when not listening.
  int port() const;
  // The listening socket's descriptor, or -1 when not listening.
  int fd() const;

 private:
  struct client;
  static void on_connection(uv_stream_t* server, int status);
  void serve(client& c);
  void close_client(client& c);
  static void on_client_handle_closed(uv_handle_t* h);

  uv_loop_t* loop_ = nullptr;
  uv_tcp_t server_{};
  std::string token_;
  handler on_request_;
  bool listening_ = false;
  std::set<client*> clients_;  // connected now; closed by stop()
};

}  // namespace wslb::supervisor
