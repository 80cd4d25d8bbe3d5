// The demo echo backend: a single-threaded epoll server (optionally forked into several
// processes sharing the listeners) that answers WebSocket, plain HTTP and raw TCP
// connections (see echo_connection.h). Run by `wslb-echo` and, in forked children, by
// `wslb demo`; also the backend of the benchmark.
#pragma once

#include <string>
#include <vector>

#include "common/config.h"

namespace wslb::demo {

struct echo_options {
  std::vector<endpoint> listen;  // one listener per entry (port 0: an ephemeral port)
  std::string id = "echo";       // reported in whoami and HTTP answers
  unsigned processes = 1;        // >1: fork this many processes sharing the listeners
  bool proxy_protocol = false;   // expect and strip a PROXY v1/v2 header on each connection
  bool black_hole = false;       // accept, never answer, never close (until the peer does)
  int http_status = 200;         // status of plain HTTP answers
  std::string ready_file;        // written once listening: one "HOST:PORT" line per listener
};

// Binds every listener, writes the ready file, logs one line and serves until SIGTERM or
// SIGINT. Blocks those two signals in the calling process and takes them through a signalfd,
// so it may be called in a freshly forked child whatever handlers the parent had. Returns
// exit_code::ok after a clean stop, exit_code::cannot_start when a listener cannot be bound,
// exit_code::failure when a forked server process dies unexpectedly.
int run_echo_server(const echo_options& options);

}  // namespace wslb::demo
