// The load generator's engine: one process, one thread, one epoll loop driving many WebSocket
// client connections in one of three modes. wslb-loadgen (loadgen_main.cpp) forks several of
// these and adds up their results.
#pragma once

#include <netinet/in.h>

#include <cstdint>
#include <string>
#include <vector>

#include "bench/histogram.h"
#include "common/config.h"

namespace wslb::bench {

enum class load_mode : std::uint8_t { echo, hold, churn };

struct loadgen_options {
  load_mode mode = load_mode::echo;
  std::vector<endpoint> targets;   // connection i goes to targets[(i / sources) % targets]
  std::vector<endpoint> sources;   // local addresses bound before connect (port 0); may be empty
  unsigned connections = 64;       // echo, hold: this process's share
  unsigned concurrency = 64;       // churn: cycles in flight in this process
  std::uint32_t size = 64;         // message payload bytes
  double duration_s = 5;           // echo, churn: measured time; hold: idle time
  double warmup_s = 1;             // echo: run before measuring
  std::uint32_t max_pending = 256; // connections being opened at once
  double timeout_s = 10;           // open (connect + handshake) and single round-trip limit
  std::string path = "/";
  std::string host = "localhost";  // Host header
  std::uint32_t first_index = 0;   // index of this process's first connection (spreads 4-tuples)
  std::uint32_t index_stride = 1;  // process count: connection k has index first + k * stride
  // wss:// (TLS 1.3, the server's certificate not checked: the benchmark measures the proxy).
  bool tls = false;
  bool tls_resume = false;         // churn: resume each new connection with a saved session
  std::string tls_server_name;     // SNI; empty: none
};

// Failure kinds, counted separately.
enum class failure : std::uint8_t {
  connect,    // socket/bind/connect refused or failed
  handshake,  // no 101 / bad Sec-WebSocket-Accept / closed during the handshake
  echo,       // wrong answer, or closed while a message was outstanding
  dropped,    // an idle held connection was closed by the other side
  timeout,    // connect, handshake or round trip took longer than timeout_s
  close,      // churn: no close frame came back before the connection ended
  count_
};
const char* to_string(failure f);

// Everything one process measured. Plain data: sent through a pipe from child to parent.
struct run_result {
  std::uint64_t attempted = 0;    // connections (echo, hold) or cycles started (churn)
  std::uint64_t opened = 0;       // handshakes completed
  std::uint64_t verified = 0;     // hold: round trips after the idle time
  std::uint64_t messages = 0;     // echo: round trips completed in the measured window
  std::uint64_t bytes = 0;        // echo: payload bytes echoed in the window (one direction)
  std::uint64_t messages_total = 0;  // every round trip, warm-up and verification included
  std::uint64_t cycles = 0;       // churn: complete connect-handshake-echo-close cycles
  std::uint64_t tls_resumed = 0;  // TLS handshakes that resumed a session
  std::uint64_t failures[static_cast<int>(failure::count_)] = {};
  double open_s = 0;              // time from start until every connection was open or failed
  double measured_s = 0;          // length of the measured window
  histogram rtt;                  // echo: message round trip; churn: whole cycle; hold: verify RTT

  void merge(const run_result& other);
  std::uint64_t failed() const;
};

// The coordinator the loop reports to (a parent process through pipes, or nothing when run
// alone): `opened` is announced once the opening phase ends; the measured phase starts when
// the `go_fd` becomes readable (one byte). go_fd -1: start at once.
struct loop_links {
  int report_fd = -1;  // write end: one byte 'O' after opening, then the run_result
  int go_fd = -1;      // read end: one byte 'G' to start the measured phase; EOF aborts
};

// Runs one process's share. Returns its result; never throws; bounded in time by the options
// (open timeout + warmup + duration + timeout, plus the coordinator's go).
run_result run_load(const loadgen_options& options, const loop_links& links);

}  // namespace wslb::bench
