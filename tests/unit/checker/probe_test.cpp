// Probes against small servers on the same libuv loop (127.0.0.1, ports from the kernel).
#include <doctest/doctest.h>

#include "tests/unit/loopback_listener.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <optional>
#include <string>

#include "checker/probe.h"
#include "protocol/http_response.h"
#include "protocol/websocket.h"

using namespace wslb;
using namespace wslb::checker;

namespace {

enum class server_mode { http_status, ws_good, ws_bad_accept, ws_no_101 };

struct test_server;

struct server_conn {
  uv_tcp_t tcp{};
  uv_write_t write_req{};
  test_server* server = nullptr;
  std::string in;
  std::string out;
  bool answered = false;
};

struct test_server {
  uv_tcp_t listener{};
  server_mode mode = server_mode::http_status;
  int status = 200;
  std::string request;       // the first request head seen
  bool saw_close_1000 = false;
  bool peer_closed = false;
};

void close_conn(server_conn* c) {
  if (uv_is_closing(reinterpret_cast<uv_handle_t*>(&c->tcp))) return;
  uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp),
           [](uv_handle_t* h) { delete static_cast<server_conn*>(h->data); });
}

void send_then(server_conn* c, std::string bytes, bool close_after) {
  c->out = std::move(bytes);
  uv_buf_t buf = uv_buf_init(c->out.data(), static_cast<unsigned>(c->out.size()));
  c->write_req.data = close_after ? c : nullptr;
  uv_write(&c->write_req, reinterpret_cast<uv_stream_t*>(&c->tcp), &buf, 1,
           [](uv_write_t* req, int) {
             if (req->data != nullptr) close_conn(static_cast<server_conn*>(req->data));
           });
}

void on_server_bytes(server_conn* c) {
  test_server& s = *c->server;
  if (!c->answered) {
    const std::size_t blank = c->in.find("\r\n\r\n");
    if (blank == std::string::npos) return;
    const std::size_t end = blank + 4;
    c->answered = true;
    s.request = c->in.substr(0, end);
    c->in.erase(0, end);
    if (s.mode == server_mode::http_status) {
      send_then(c, "HTTP/1.1 " + std::to_string(s.status) + " X\r\nContent-Length: 0\r\n\r\n", true);
      return;
    }
    if (s.mode == server_mode::ws_no_101) {
      send_then(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true);
      return;
    }
    const auto key = protocol::response_header(s.request, "Sec-WebSocket-Key");
    std::string accept = key ? protocol::websocket_accept(*key) : "";
    if (s.mode == server_mode::ws_bad_accept) accept = protocol::websocket_accept("nope");
    send_then(c,
              "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Accept: " + accept + "\r\n\r\n",
              false);
  }
  protocol::frame_header h;
  if (!protocol::decode_frame_header(reinterpret_cast<const std::uint8_t*>(c->in.data()),
                                     c->in.size(), h)) {
    return;
  }
  if (c->in.size() < h.header_len + h.payload_len) return;
  if (h.op == protocol::opcode::close && h.masked && h.payload_len == 2) {
    auto* payload = reinterpret_cast<std::uint8_t*>(c->in.data()) + h.header_len;
    protocol::apply_mask(payload, 2, h.mask);
    s.saw_close_1000 = ((payload[0] << 8) | payload[1]) == protocol::close_normal;
    const auto reply = protocol::make_close_frame(protocol::close_normal, false);
    send_then(c, std::string(reinterpret_cast<const char*>(reply.bytes.data()), reply.size), true);
  }
}

int start_server(uv_loop_t* loop, test_server& s) {
  uv_tcp_init(loop, &s.listener);
  s.listener.data = &s;
  sockaddr_in addr{};
  uv_ip4_addr("127.0.0.1", 0, &addr);
  REQUIRE(uv_tcp_bind(&s.listener, reinterpret_cast<const sockaddr*>(&addr), 0) == 0);
  REQUIRE(uv_listen(reinterpret_cast<uv_stream_t*>(&s.listener), 16, [](uv_stream_t* l, int) {
    auto* c = new server_conn;
    c->server = static_cast<test_server*>(l->data);
    uv_tcp_init(l->loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(l, reinterpret_cast<uv_stream_t*>(&c->tcp)) != 0) return close_conn(c);
    uv_read_start(
        reinterpret_cast<uv_stream_t*>(&c->tcp),
        [](uv_handle_t*, std::size_t n, uv_buf_t* buf) { *buf = uv_buf_init(new char[n], static_cast<unsigned>(n)); },
        [](uv_stream_t* st, ssize_t nread, const uv_buf_t* buf) {
          auto* conn = static_cast<server_conn*>(st->data);
          if (nread > 0) {
            conn->in.append(buf->base, static_cast<std::size_t>(nread));
            on_server_bytes(conn);
          } else if (nread < 0) {
            conn->server->peer_closed = true;
            close_conn(conn);
          }
          delete[] buf->base;
        });
  }) == 0);
  sockaddr_storage bound{};
  int len = sizeof bound;
  uv_tcp_getsockname(&s.listener, reinterpret_cast<sockaddr*>(&bound), &len);
  return ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
}

probe_target target_for(int port, probe_kind kind, std::uint32_t timeout_ms = 2000) {
  probe_target t;
  t.kind = kind;
  auto* a = reinterpret_cast<sockaddr_in*>(&t.addr);
  a->sin_family = AF_INET;
  a->sin_port = htons(static_cast<std::uint16_t>(port));
  a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  t.addr_len = sizeof(sockaddr_in);
  t.host = "127.0.0.1:" + std::to_string(port);
  t.path = "/health";
  t.timeout_ms = timeout_ms;
  return t;
}

// A listening socket nobody accepts from: connects complete in the kernel's backlog, and
// then nothing is ever said (a black-hole backend).
using black_hole = wslb::testing::loopback_listener;  // connects, never answers

int closed_port() {
  black_hole h;  // bound and closed again: nothing listens there afterwards
  return h.port;
}

struct loop_fixture {
  uv_loop_t loop{};
  uv_timer_t settle{};
  loop_fixture() {
    uv_loop_init(&loop);
    uv_timer_init(&loop, &settle);
  }
  ~loop_fixture() {
    uv_walk(&loop, [](uv_handle_t* h, void*) {
      if (!uv_is_closing(h)) uv_close(h, nullptr);
    }, nullptr);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop) == 0);  // every probe closed all it opened
  }

  // Runs one probe to its end; the loop keeps running until the probe's handles are closed.
  probe_outcome run_probe(const probe_target& t, std::int64_t* took_ms = nullptr) {
    std::optional<probe_outcome> got;
    const std::uint64_t start = uv_now(&loop);
    start_probe(&loop, t, [&](const probe_outcome& o) {
      got = o;
      uv_stop(&loop);
    });
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_update_time(&loop);
    if (took_ms) *took_ms = static_cast<std::int64_t>(uv_now(&loop) - start);
    REQUIRE(got.has_value());
    // Let the probe finish closing (and the server see its close) within a short while.
    uv_timer_start(&settle, [](uv_timer_t* h) { uv_stop(h->loop); }, 100, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    return *got;
  }
};

}  // namespace

TEST_CASE("probe.tcp_connect_ok_and_refused") {
  loop_fixture f;
  black_hole listening;  // a connect is all a tcp check needs
  probe_outcome o = f.run_probe(target_for(listening.port, probe_kind::tcp));
  CHECK(o.status == probe_status::ok);
  o = f.run_probe(target_for(closed_port(), probe_kind::tcp));
  CHECK(o.status == probe_status::failed);
  CHECK(o.error == "connect refused");
}

TEST_CASE("probe.http_status_decides") {
  loop_fixture f;
  test_server s;
  const int port = start_server(&f.loop, s);
  for (int status : {200, 204, 301, 302}) {
    s.status = status;
    CHECK(f.run_probe(target_for(port, probe_kind::http)).status == probe_status::ok);
  }
  CHECK(s.request.rfind("GET /health HTTP/1.1\r\n", 0) == 0);
  CHECK(protocol::response_header(s.request, "Host") == "127.0.0.1:" + std::to_string(port));
  CHECK(protocol::response_header(s.request, "Connection") == std::string("close"));
  for (int status : {404, 500, 503}) {
    s.status = status;
    const probe_outcome o = f.run_probe(target_for(port, probe_kind::http));
    CHECK(o.status == probe_status::failed);
    CHECK(o.error == "HTTP " + std::to_string(status));
  }
}

TEST_CASE("probe.black_hole_times_out") {
  loop_fixture f;
  black_hole hole;
  for (probe_kind kind : {probe_kind::http, probe_kind::websocket}) {
    std::int64_t took = 0;
    const probe_outcome o = f.run_probe(target_for(hole.port, kind, 150), &took);
    CHECK(o.status == probe_status::timed_out);
    CHECK(o.error.rfind("timeout after 150 ms", 0) == 0);
    CHECK(took >= 140);
    CHECK(took < 1000);
  }
}

TEST_CASE("probe.websocket_upgrade_and_clean_close") {
  loop_fixture f;
  test_server s;
  s.mode = server_mode::ws_good;
  const int port = start_server(&f.loop, s);
  const probe_outcome o = f.run_probe(target_for(port, probe_kind::websocket));
  CHECK(o.status == probe_status::ok);
  CHECK(o.error.empty());
  CHECK(protocol::response_header(s.request, "Upgrade") == std::string("websocket"));
  CHECK(protocol::response_header(s.request, "Sec-WebSocket-Version") == std::string("13"));
  REQUIRE(protocol::response_header(s.request, "Sec-WebSocket-Key"));
  CHECK(protocol::valid_websocket_key(*protocol::response_header(s.request, "Sec-WebSocket-Key")));
  CHECK(s.saw_close_1000);  // masked close frame with code 1000
}

TEST_CASE("probe.websocket_failures_in_words") {
  loop_fixture f;
  test_server s;
  const int port = start_server(&f.loop, s);
  s.mode = server_mode::ws_bad_accept;
  probe_outcome o = f.run_probe(target_for(port, probe_kind::websocket));
  CHECK(o.status == probe_status::failed);
  CHECK(o.error == "bad Sec-WebSocket-Accept");
  s.mode = server_mode::ws_no_101;
  o = f.run_probe(target_for(port, probe_kind::websocket));
  CHECK(o.status == probe_status::failed);
  CHECK(o.error == "no 101 for upgrade (HTTP 200)");
  o = f.run_probe(target_for(closed_port(), probe_kind::websocket));
  CHECK(o.error == "connect refused");
}

TEST_CASE("probe.cancel_never_calls_back") {
  loop_fixture f;
  black_hole hole;
  bool called = false;
  probe* p = start_probe(&f.loop, target_for(hole.port, probe_kind::http, 50),
                         [&](const probe_outcome&) { called = true; });
  cancel_probe(p);
  uv_run(&f.loop, UV_RUN_DEFAULT);  // ends once the cancelled probe's handles are closed
  CHECK_FALSE(called);
}
