#include <doctest/doctest.h>

#include "tests/unit/socket_address.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstdint>
#include <string>
#include <vector>

#include "demo/echo_connection.h"
#include "protocol/proxy_protocol.h"
#include "protocol/websocket.h"

using namespace wslb;
using namespace wslb::demo;

using wslb::testing::ip_port;

namespace {

demo::feed_result feed(echo_connection& c, const std::string& bytes, std::string& out) {
  return c.feed(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size(), out);
}

std::string masked_frame(protocol::opcode op, const std::string& payload, bool fin = true) {
  const std::uint8_t mask[4] = {0x11, 0x22, 0x33, 0x44};
  std::uint8_t header[protocol::max_frame_header];
  auto n = protocol::write_frame_header(header, op, payload.size(), mask);
  if (!fin) header[0] &= 0x7F;
  std::string frame(reinterpret_cast<char*>(header), n);
  std::string body = payload;
  protocol::apply_mask(reinterpret_cast<std::uint8_t*>(body.data()), body.size(), mask);
  return frame + body;
}

const std::string upgrade =
    "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    "X-Forwarded-For: 10.0.0.1\r\n\r\n";

}  // namespace

TEST_CASE("echo.raw_bytes_are_echoed_verbatim") {
  echo_settings s;
  echo_connection c(s);
  std::string out;
  CHECK(feed(c, std::string("\x00\x01hello", 7), out) == feed_result::keep_open);
  CHECK(c.kind() == echo_kind::raw);
  CHECK(out == std::string("\x00\x01hello", 7));
}

TEST_CASE("echo.short_uppercase_raw_message_is_echoed_at_eof") {
  echo_settings s;
  echo_connection c(s);
  std::string out;
  feed(c, "GE", out);
  CHECK(out.empty());
  CHECK(c.kind() == echo_kind::detecting);
  CHECK(c.peer_closed(out) == feed_result::close_after_flush);
  CHECK(out == "GE");
}

TEST_CASE("echo.plain_http_answers_json_and_keeps_alive") {
  echo_settings s;
  s.id = "b1";
  s.http_status = 503;
  echo_connection c(s);
  std::string out;
  const std::string req = "GET /a?b=1 HTTP/1.1\r\nHost: h\r\nX-Y: \"q\"\r\n\r\n";
  CHECK(feed(c, req + req.substr(0, 10), out) == feed_result::keep_open);
  CHECK(out.rfind("HTTP/1.1 503 Service Unavailable\r\n", 0) == 0);
  CHECK(out.find("Connection: keep-alive") != std::string::npos);
  CHECK(out.find(R"("id":"b1","method":"GET","target":"/a?b=1")") != std::string::npos);
  CHECK(out.find(R"("x-y":"\"q\"")") != std::string::npos);
  CHECK(out.find(R"("proxy":null)") != std::string::npos);
  out.clear();
  CHECK(feed(c, req.substr(10), out) == feed_result::keep_open);
  CHECK(out.rfind("HTTP/1.1 503", 0) == 0);
  out.clear();
  CHECK(feed(c, "GET / HTTP/1.1\r\nConnection: close\r\n\r\n", out) ==
        feed_result::close_after_flush);
  CHECK(out.find("Connection: close") != std::string::npos);
}

TEST_CASE("echo.http_body_is_skipped") {
  echo_settings s;
  echo_connection c(s);
  std::string out;
  feed(c, "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nab", out);
  CHECK(out.find(R"("method":"POST")") != std::string::npos);
  out.clear();
  feed(c, "cdeGET /q HTTP/1.1\r\nHost: h\r\n\r\n", out);
  CHECK(out.find(R"("target":"/q")") != std::string::npos);
}

TEST_CASE("echo.websocket_handshake_then_frames_byte_by_byte") {
  echo_settings s;
  s.id = "w";
  echo_connection c(s);
  std::string out;
  feed(c, upgrade, out);
  CHECK(c.kind() == echo_kind::websocket);
  CHECK(out.find("HTTP/1.1 101 Switching Protocols\r\n") == 0);
  CHECK(out.find("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n") != std::string::npos);

  std::string stream = masked_frame(protocol::opcode::binary, std::string(300, 'z')) +
                       masked_frame(protocol::opcode::text, "whoami") +
                       masked_frame(protocol::opcode::ping, "p") +
                       masked_frame(protocol::opcode::text, "ab", false) +
                       masked_frame(protocol::opcode::continuation, "cd");
  out.clear();
  for (char ch : stream) feed(c, std::string(1, ch), out);

  std::size_t pos = 0;
  auto next = [&](protocol::frame_header& h) {
    REQUIRE(protocol::decode_frame_header(reinterpret_cast<const std::uint8_t*>(out.data()) + pos,
                                          out.size() - pos, h));
    CHECK_FALSE(h.masked);
    const auto payload = out.substr(pos + h.header_len, h.payload_len);
    pos += h.header_len + h.payload_len;
    return payload;
  };
  protocol::frame_header h;
  CHECK(next(h) == std::string(300, 'z'));
  CHECK(h.op == protocol::opcode::binary);
  const auto who = next(h);
  CHECK(h.op == protocol::opcode::text);
  CHECK(who.find(R"("id":"w")") != std::string::npos);
  CHECK(who.find(R"("x-forwarded-for":"10.0.0.1")") != std::string::npos);
  CHECK(next(h) == "p");
  CHECK(h.op == protocol::opcode::pong);
  CHECK(next(h) == "ab");
  CHECK_FALSE(h.fin);
  CHECK(next(h) == "cd");
  CHECK(h.op == protocol::opcode::continuation);
  CHECK(h.fin);
  CHECK(pos == out.size());
}

TEST_CASE("echo.websocket_close_is_answered_with_the_same_code") {
  echo_settings s;
  echo_connection c(s);
  std::string out;
  feed(c, upgrade, out);
  out.clear();
  CHECK(feed(c, masked_frame(protocol::opcode::close, std::string("\x0f\xa1", 2)), out) ==
        feed_result::close_after_flush);
  CHECK(out == std::string("\x88\x02\x0f\xa1", 4));
}

TEST_CASE("echo.unmasked_client_frame_is_a_protocol_error") {
  echo_settings s;
  echo_connection c(s);
  std::string out;
  feed(c, upgrade, out);
  out.clear();
  CHECK(feed(c, std::string("\x81\x01x", 3), out) == feed_result::close_after_flush);
  CHECK(out == std::string("\x88\x02\x03\xea", 4));  // 1002
}

TEST_CASE("echo.bad_handshake_is_refused") {
  echo_settings s;
  echo_connection c(s);
  std::string out;
  CHECK(feed(c, "GET / HTTP/1.1\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n", out) ==
        feed_result::close_after_flush);
  CHECK(out.rfind("HTTP/1.1 400", 0) == 0);
}

TEST_CASE("echo.request_line_sniffing") {
  bool maybe = false;
  CHECK(looks_like_request_line("GET /", maybe));
  CHECK_FALSE(looks_like_request_line("GE", maybe));
  CHECK(maybe);
  CHECK_FALSE(looks_like_request_line("get /", maybe));
  CHECK_FALSE(maybe);
  CHECK_FALSE(looks_like_request_line("HELLO\n", maybe));
  CHECK_FALSE(maybe);
}

TEST_CASE("echo.proxy_header_is_stripped_and_reported") {
  echo_settings s;
  s.expect_proxy = true;
  echo_connection c(s);
  std::string out;
  const std::string v1 = "PROXY TCP4 192.0.2.7 127.0.0.1 40000 9001\r\n";
  feed(c, v1.substr(0, 9), out);
  CHECK(out.empty());
  feed(c, v1.substr(9) + "GET / HTTP/1.1\r\nHost: h\r\n\r\n", out);
  CHECK(out.find(R"("proxy":{"version":1,"src":"192.0.2.7:40000","dst":"127.0.0.1:9001"})") !=
        std::string::npos);
}

TEST_CASE("echo.v2_proxy_header_before_websocket") {
  echo_settings s;
  s.expect_proxy = true;
  echo_connection c(s);
  const sockaddr_storage client = ip_port("10.0.0.1", 5555), local = ip_port("127.0.0.1", 80);
  std::uint8_t header[protocol::proxy_header_max];
  const auto n = protocol::write_proxy_header(protocol::proxy_version::v2,
                                              reinterpret_cast<const sockaddr*>(&client),
                                              reinterpret_cast<const sockaddr*>(&local), header,
                                              sizeof header);
  REQUIRE(n > 0);
  std::string out;
  feed(c, std::string(reinterpret_cast<char*>(header), n) + upgrade +
              masked_frame(protocol::opcode::text, "whoami"), out);
  CHECK(c.kind() == echo_kind::websocket);
  CHECK(out.find(R"("proxy":{"version":2,"src":"10.0.0.1:5555","dst":"127.0.0.1:80"})") !=
        std::string::npos);
}

TEST_CASE("echo.missing_proxy_header_drops_the_connection") {
  echo_settings s;
  s.expect_proxy = true;
  echo_connection c(s);
  std::string out;
  CHECK(feed(c, "GET / HTTP/1.1\r\n\r\n", out) == feed_result::close_after_flush);
  CHECK(out.empty());
}
