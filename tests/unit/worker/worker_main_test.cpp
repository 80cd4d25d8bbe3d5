// run_worker in a forked child over a table in anonymous shared memory, as the master runs it:
// the test plays the master (table rows, listener, socketpair) and an echo backend, then checks
// the worker's contract: ready, relaying and counting, drain, stop, and exit when the master
// goes away.
#include <doctest/doctest.h>

#include "tests/unit/forked_child.h"
#include "tests/unit/loopback_listener.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/exit_codes.h"
#include "common/parse.h"
#include "shm/table.h"
#include "shm/table_ops.h"
#include "worker/affinity_cookie.h"
#include "worker/worker_main.h"

using namespace wslb;
using namespace std::chrono_literals;

namespace {

using testing::shared_table;
using wslb::testing::listen_on_loopback;

// Echoes the bytes of connection `c` until it ends.
void echo_bytes(int c) {
  char buf[4096];
  for (;;) {
    const ssize_t n = read(c, buf, sizeof buf);
    if (n <= 0) break;
    if (write(c, buf, static_cast<std::size_t>(n)) != n) break;
  }
}

// A backend: one thread per connection running `serve` (a byte echo unless told otherwise),
// stopped by shutting its listener down.
struct echo_backend {
  int fd = -1;
  int port = 0;
  std::thread acceptor;
  std::vector<std::thread> conns;
  explicit echo_backend(std::function<void(int)> serve = echo_bytes) {
    fd = listen_on_loopback(port, false);
    acceptor = std::thread([this, serve] {
      for (;;) {
        const int c = accept(fd, nullptr, nullptr);
        if (c < 0) return;
        conns.emplace_back([c, serve] {
          serve(c);
          close(c);
        });
      }
    });
  }
  ~echo_backend() {
    shutdown(fd, SHUT_RDWR);
    acceptor.join();
    for (auto& t : conns) t.join();
    close(fd);
  }
};

struct forked_worker {
  shared_table shared;
  config cfg;
  int listen_fd = -1;
  int listen_port = 0;
  std::optional<testing::forked_child> proc;  // the worker, once forked

  // `tune` adjusts the configuration before the fork; `fd_limit` (if not 0) is the child's
  // RLIMIT_NOFILE, soft and hard.
  explicit forked_worker(int backend_port, proxy_mode mode = proxy_mode::tcp,
                         const std::function<void(config&)>& tune = {}, rlim_t fd_limit = 0) {
    std::string error;
    backend_config b;
    REQUIRE(parse_endpoint("127.0.0.1:" + std::to_string(backend_port), b.where, error));
    b.row = 0;
    cfg.backends.push_back(b);
    cfg.mode = mode;
    cfg.check.kind = check_kind::none;
    cfg.drain_timeout_ms = 2000;
    if (tune) tune(cfg);
    shm::table& t = *shared.t;
    for (const backend_config& c : cfg.backends) {  // `tune` may have added some
      shm::copy_fixed(t.backends[c.row].address, shm::address_chars, c.where.to_string());
      t.backends[c.row].weight = 1;
      t.backends[c.row].healthy = 1;
      t.backends[c.row].state = shm::backend_state::active;
    }
    t.header.backend_high_water = static_cast<std::uint32_t>(cfg.backends.size());
    t.header.slot_high_water = 1;
    t.workers[0].state = shm::worker_state::starting;
    t.workers[0].generation = 1;
    listen_fd = listen_on_loopback(listen_port, true);
    proc.emplace([&](int master_fd) {
      if (fd_limit != 0) {
        const rlimit lim{fd_limit, fd_limit};
        setrlimit(RLIMIT_NOFILE, &lim);
      }
      return worker::run_worker(worker::launch{cfg, t, listen_fd, master_fd, 0, 1});
    });
  }
  ~forked_worker() {
    proc.reset();
    close(listen_fd);
  }
  shm::table& table() { return *shared.t; }

  char receive(int timeout_ms) {
    pollfd p{proc->master_end, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) != 1) return 0;
    char c = 0;
    return recv(proc->master_end, &c, 1, 0) == 1 ? c : 0;
  }
  void send_message(char m) { REQUIRE(send(proc->master_end, &m, 1, MSG_NOSIGNAL) == 1); }
  // The exit status, or -1 if it has not exited within `timeout`.
  int wait_exit(std::chrono::milliseconds timeout) { return proc->wait_exit(timeout); }
  int connect_client() const {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<std::uint16_t>(listen_port));
    REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    timeval tv{5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
  }
};

std::string echo_round_trip(int fd, const std::string& text) {
  REQUIRE(write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
  std::string got;
  char buf[256];
  while (got.size() < text.size()) {
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) break;
    got.append(buf, static_cast<std::size_t>(n));
  }
  return got;
}

template <typename F>
bool eventually(F f, std::chrono::milliseconds timeout = 3000ms) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    if (f()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return f();
}

}  // namespace

TEST_CASE("worker.cannot_start_without_backends") {
  shared_table shared;
  config cfg;  // no backend
  CHECK(worker::run_worker(worker::launch{cfg, *shared.t, -1, -1, 0, 1}) ==
        exit_code::fatal_config);
}

TEST_CASE("worker.relays_counts_and_drains_after_the_last_connection") {
  echo_backend backend;
  forked_worker w(backend.port);
  REQUIRE(w.receive(3000) == worker::msg_ready);
  shm::table& t = w.table();

  const int client = w.connect_client();
  CHECK(echo_round_trip(client, "hello") == "hello");
  CHECK(t.workers[0].connections.load() == 1);
  CHECK(t.workers[0].accepted.load() == 1);
  CHECK(t.workers[0].backends[0].active.load() == 1);
  CHECK(t.workers[0].backends[0].total.load() == 1);
  // Bytes reach the table on the housekeeping tick.
  CHECK(eventually([&] { return t.workers[0].backends[0].bytes_in.load() == 5 &&
                                t.workers[0].backends[0].bytes_out.load() == 5; }));

  // Draining: a deadline is published, established connections keep relaying, no exit yet.
  w.send_message(worker::msg_drain);
  CHECK(eventually([&] { return t.workers[0].drain_deadline_ms.load() != 0; }));
  CHECK(echo_round_trip(client, "still here") == "still here");
  CHECK(w.wait_exit(200ms) == -1);
  // The last connection closes: the worker exits 0 and its counts are back to zero.
  close(client);
  CHECK(w.wait_exit(3000ms) == exit_code::ok);
  CHECK(t.workers[0].connections.load() == 0);
  CHECK(t.workers[0].backends[0].active.load() == 0);
}

TEST_CASE("worker.half_close_is_passed_on") {
  echo_backend backend;
  forked_worker w(backend.port);
  REQUIRE(w.receive(3000) == worker::msg_ready);
  const int client = w.connect_client();
  CHECK(echo_round_trip(client, "abc") == "abc");
  // Our FIN reaches the echo backend, which closes; its FIN comes back to us.
  REQUIRE(write(client, "tail", 4) == 4);
  shutdown(client, SHUT_WR);
  std::string rest;
  char buf[64];
  ssize_t n;
  while ((n = read(client, buf, sizeof buf)) > 0) rest.append(buf, static_cast<std::size_t>(n));
  CHECK(rest == "tail");
  CHECK(n == 0);  // EOF, not a timeout
  close(client);
  CHECK(eventually([&] { return w.table().workers[0].connections.load() == 0; }));
}

TEST_CASE("worker.exits_when_the_master_goes_away_or_says_stop") {
  echo_backend backend;
  SUBCASE("EOF on the master channel, with a connection open") {
    forked_worker w(backend.port);
    REQUIRE(w.receive(3000) == worker::msg_ready);
    const int client = w.connect_client();
    CHECK(echo_round_trip(client, "x") == "x");
    w.proc->hang_up();
    CHECK(w.wait_exit(1000ms) == exit_code::ok);
    char c;
    CHECK(read(client, &c, 1) <= 0);  // its connection was closed, not left serving
    close(client);
  }
  SUBCASE("msg_stop closes everything at once") {
    forked_worker w(backend.port);
    REQUIRE(w.receive(3000) == worker::msg_ready);
    const int client = w.connect_client();
    CHECK(echo_round_trip(client, "x") == "x");
    w.send_message(worker::msg_stop);
    CHECK(w.wait_exit(1000ms) == exit_code::ok);
    close(client);
  }
  SUBCASE("SIGTERM is a stop") {
    forked_worker w(backend.port);
    REQUIRE(w.receive(3000) == worker::msg_ready);
    kill(w.proc->pid, SIGTERM);
    CHECK(w.wait_exit(1000ms) == exit_code::ok);
  }
}

TEST_CASE("worker.no_healthy_backend_closes_tcp_and_answers_503_in_http_mode") {
  echo_backend backend;
  for (proxy_mode mode : {proxy_mode::tcp, proxy_mode::http}) {
    forked_worker w(backend.port, mode);
    REQUIRE(w.receive(3000) == worker::msg_ready);
    w.table().backends[0].healthy = 0;
    const int client = w.connect_client();
    std::string got;
    if (mode == proxy_mode::http) {
      const std::string req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
      REQUIRE(write(client, req.data(), req.size()) == static_cast<ssize_t>(req.size()));
    }
    char buf[512];
    ssize_t n;
    while ((n = read(client, buf, sizeof buf)) > 0) got.append(buf, static_cast<std::size_t>(n));
    CHECK(n == 0);
    close(client);
    const auto& errors = w.table().workers[0].errors;
    if (mode == proxy_mode::http) {
      CHECK(got.rfind("HTTP/1.1 503", 0) == 0);
      CHECK(errors[static_cast<std::size_t>(shm::error_kind::no_backend_503)].load() == 1);
    } else {
      CHECK(got.empty());
      CHECK(errors[static_cast<std::size_t>(shm::error_kind::no_backend_tcp_close)].load() == 1);
    }
  }
}

namespace {

// Answers every request head on connection `c` with a 200 whose one-byte body is `who`.
std::function<void(int)> answer_as(char who) {
  return [who](int c) {
    const std::string answer = std::string("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n") + who;
    std::string got;
    char buf[4096];
    for (;;) {
      const ssize_t n = read(c, buf, sizeof buf);
      if (n <= 0) return;
      got.append(buf, static_cast<std::size_t>(n));
      for (std::size_t end; (end = got.find("\r\n\r\n")) != std::string::npos;) {
        got.erase(0, end + 4);
        if (write(c, answer.data(), answer.size()) != static_cast<ssize_t>(answer.size())) return;
      }
    }
  };
}

}  // namespace

TEST_CASE("worker.kept_alive_connection_follows_its_requests_to_another_backend") {
  // The affinity cookie sends each request of one kept-alive connection to the backend it
  // names: the backend connection is replaced, and the new one's answers must be read.
  echo_backend a(answer_as('A')), b(answer_as('B'));
  forked_worker w(a.port, proxy_mode::http, [&](config& cfg) {
    std::string error;
    backend_config other;
    REQUIRE(parse_endpoint("127.0.0.1:" + std::to_string(b.port), other.where, error));
    other.row = 1;
    cfg.backends.push_back(other);
    cfg.sticky_cookie.name = "SRV";
  });
  REQUIRE(w.receive(3000) == worker::msg_ready);
  const int client = w.connect_client();
  std::string got;
  for (const char want : {'A', 'B', 'A'}) {
    const int port = want == 'A' ? a.port : b.port;
    const std::string req = "GET / HTTP/1.1\r\nHost: x\r\nCookie: SRV=" +
                            worker::affinity_id("SRV", "127.0.0.1:" + std::to_string(port)) +
                            "\r\n\r\n";
    REQUIRE(write(client, req.data(), req.size()) == static_cast<ssize_t>(req.size()));
    char buf[512];
    std::string answer;
    while (answer.find("\r\n\r\n") == std::string::npos || answer.back() == '\n') {
      const ssize_t n = read(client, buf, sizeof buf);
      if (n <= 0) break;
      answer.append(buf, static_cast<std::size_t>(n));
    }
    CAPTURE(answer);
    REQUIRE(!answer.empty());
    got += answer.back();
  }
  close(client);
  CHECK(got == "ABA");
}

namespace {

// Reads until `n` bytes arrived, EOF, or the receive timeout.
std::string read_exactly(int fd, std::size_t n) {
  std::string got;
  char buf[512];
  while (got.size() < n) {
    const ssize_t r = read(fd, buf, std::min(sizeof buf, n - got.size()));
    if (r <= 0) break;
    got.append(buf, static_cast<std::size_t>(r));
  }
  return got;
}

std::string read_to_eof(int fd) {
  std::string got;
  char buf[512];
  ssize_t r;
  while ((r = read(fd, buf, sizeof buf)) > 0) got.append(buf, static_cast<std::size_t>(r));
  return got;
}

// A masked client frame header (binary, FIN) for a payload of `len` < 126 bytes.
std::string masked_header(std::size_t len) {
  return std::string{'\x82', static_cast<char>(0x80 | len), 1, 2, 3, 4};
}

const std::string switched = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";
const std::string close_1001 = std::string{'\x88', '\x02', '\x03', '\xE9'};

// In tcp mode the worker watches the backend's first bytes for a 101. The byte echo returns
// what the client sends, so a client that sends a 101 head makes the connection "upgraded".
int upgraded_client(forked_worker& w) {
  const int c = w.connect_client();
  REQUIRE(write(c, switched.data(), switched.size()) == static_cast<ssize_t>(switched.size()));
  REQUIRE(read_exactly(c, switched.size()) == switched);
  return c;
}

}  // namespace

TEST_CASE("worker.drain_deadline_closes_upgraded_connections_at_frame_boundaries") {
  echo_backend backend;
  forked_worker w(backend.port, proxy_mode::tcp, [](config& c) { c.drain_timeout_ms = 200; });
  REQUIRE(w.receive(3000) == worker::msg_ready);
  const int c = upgraded_client(w);
  const std::string whole = masked_header(5) + "hello";
  REQUIRE(write(c, whole.data(), whole.size()) == static_cast<ssize_t>(whole.size()));
  CHECK(read_exactly(c, whole.size()) == whole);
  // Half a frame in both directions (the echo sends it back), then the deadline passes.
  const std::string first_half = masked_header(10) + "01234";
  REQUIRE(write(c, first_half.data(), first_half.size()) == static_cast<ssize_t>(first_half.size()));
  CHECK(read_exactly(c, first_half.size()) == first_half);
  w.send_message(worker::msg_drain);
  std::this_thread::sleep_for(400ms);  // deadline (200 ms) and spread window (50 ms) are over
  // The rest of the frame goes through; the frame after it must not (our close frame is there).
  const std::string rest = std::string("56789") + masked_header(3) + "bad";
  REQUIRE(write(c, rest.data(), rest.size()) == static_cast<ssize_t>(rest.size()));
  const std::string got = read_to_eof(c);
  CHECK(got == std::string("56789") + close_1001);
  close(c);
  CHECK(w.wait_exit(3000ms) == exit_code::ok);
}

TEST_CASE("worker.drain_deadline_sends_fin_to_plain_connections") {
  echo_backend backend;
  forked_worker w(backend.port, proxy_mode::tcp, [](config& c) { c.drain_timeout_ms = 100; });
  REQUIRE(w.receive(3000) == worker::msg_ready);
  const int c = w.connect_client();
  CHECK(echo_round_trip(c, "plain bytes") == "plain bytes");
  w.send_message(worker::msg_drain);
  const auto start = std::chrono::steady_clock::now();
  CHECK(read_to_eof(c).empty());  // a FIN, no bytes of ours
  CHECK(std::chrono::steady_clock::now() - start < 2000ms);
  close(c);
  CHECK(w.wait_exit(3000ms) == exit_code::ok);
}

TEST_CASE("worker.on_down_close_closes_upgraded_connections_of_a_down_backend") {
  echo_backend backend;
  forked_worker w(backend.port, proxy_mode::tcp,
                  [](config& c) { c.on_down = on_down_policy::close; });
  REQUIRE(w.receive(3000) == worker::msg_ready);
  const int c = upgraded_client(w);
  w.table().backends[0].healthy = 0;  // as the checker would
  const auto start = std::chrono::steady_clock::now();
  CHECK(read_to_eof(c) == close_1001);
  CHECK(std::chrono::steady_clock::now() - start < 2000ms);
  close(c);
  CHECK(eventually([&] { return w.table().workers[0].connections.load() == 0; }));
}

TEST_CASE("worker.idle_timeout_closes_only_quiet_tunnels") {
  echo_backend backend;
  forked_worker w(backend.port, proxy_mode::tcp, [](config& c) { c.idle_timeout_ms = 300; });
  REQUIRE(w.receive(3000) == worker::msg_ready);
  const int quiet = w.connect_client();
  const int busy = w.connect_client();
  CHECK(echo_round_trip(quiet, "q") == "q");
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 12; ++i) {
    CHECK(echo_round_trip(busy, "b") == "b");
    std::this_thread::sleep_for(100ms);
  }
  // 1.2 s later the busy one still relays; the quiet one was closed (FIN, then EOF).
  CHECK(echo_round_trip(busy, "still") == "still");
  CHECK(read_to_eof(quiet).empty());
  CHECK(std::chrono::steady_clock::now() - start < 3000ms);
  close(quiet);
  close(busy);
}

TEST_CASE("worker.pauses_accept_when_out_of_descriptors_and_resumes") {
  echo_backend backend;
  // 64 descriptors: (64 - 32 reserved) / 2 = 16 sessions.
  forked_worker w(backend.port, proxy_mode::tcp, {}, 64);
  REQUIRE(w.receive(3000) == worker::msg_ready);
  std::vector<int> clients;
  for (int i = 0; i < 30; ++i) clients.push_back(w.connect_client());  // the rest wait queued
  shm::table& t = w.table();
  CHECK(eventually([&] { return t.workers[0].connections.load() == 16; }));
  std::this_thread::sleep_for(100ms);
  CHECK(t.workers[0].connections.load() == 16);
  // Paused, not spinning: almost no CPU while connections wait in the queue.
  auto cpu_ticks = [&] {
    char path[64];
    std::snprintf(path, sizeof path, "/proc/%d/stat", w.proc->pid);
    FILE* f = std::fopen(path, "r");
    REQUIRE(f != nullptr);
    unsigned long utime = 0, stime = 0;
    REQUIRE(std::fscanf(f, "%*d %*s %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime,
                        &stime) == 2);
    std::fclose(f);
    return utime + stime;
  };
  const unsigned long before = cpu_ticks();
  std::this_thread::sleep_for(500ms);
  CHECK(cpu_ticks() - before <= 5);  // clock ticks of 10 ms
  // Freed descriptors let the queued connections in, and they are served.
  for (int i = 0; i < 14; ++i) close(clients[static_cast<std::size_t>(i)]);
  for (std::size_t i = 14; i < clients.size(); ++i) {
    CHECK(echo_round_trip(clients[i], "late") == "late");
  }
  CHECK(t.workers[0].accepted.load() == 30);
  for (std::size_t i = 14; i < clients.size(); ++i) close(clients[i]);
}
