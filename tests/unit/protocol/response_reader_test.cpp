#include <doctest/doctest.h>

#include <string>
#include <string_view>
#include <vector>

#include "protocol/response_reader.h"

using namespace wslb::protocol;

namespace {

struct seen {
  std::vector<response_event> events;
  std::vector<std::size_t> ends;  // offset in the input after each event
  std::size_t consumed = 0;
};

// Feeds `bytes` in pieces of `piece` bytes and records every event and where it happened;
// stops at done, switched or error.
seen run(response_reader& r, std::string_view bytes, std::size_t piece = 1 << 20) {
  seen out;
  std::size_t at = 0;
  while (at < bytes.size()) {
    const std::size_t n = std::min(piece, bytes.size() - at);
    std::size_t off = 0;
    while (off < n) {
      const response_step s = r.feed(bytes.data() + at + off, n - off);
      off += s.consumed;
      if (s.event == response_event::need_more) break;
      out.events.push_back(s.event);
      out.ends.push_back(at + off);
      if (s.event != response_event::status_line && s.event != response_event::interim) {
        out.consumed = at + off;
        return out;
      }
    }
    at += n;
  }
  out.consumed = at;
  return out;
}

}  // namespace

TEST_CASE("response_reader.content_length_then_next_response") {
  const std::string one = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
  for (std::size_t piece : {std::size_t{1}, std::size_t{3}, std::size_t{1000}}) {
    response_reader r;
    r.expect(false, false);
    const seen s = run(r, one + "HTTP/1.1 200 OK\r\n", piece);
    REQUIRE(s.events.size() == 2);
    CHECK(s.events[0] == response_event::status_line);
    CHECK(s.ends[0] == 17);
    CHECK(s.events[1] == response_event::done);
    CHECK(s.consumed == one.size());
    CHECK(r.status() == 200);
    CHECK(r.keep_alive());
    CHECK_FALSE(r.expecting());
    // Bytes nobody asked for.
    CHECK(r.feed("HTTP/1.1", 8).event == response_event::error);
  }
}

TEST_CASE("response_reader.chunked_with_trailer") {
  const std::string body = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                           "5;ext=1\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n";
  for (std::size_t piece : {std::size_t{1}, std::size_t{7}, std::size_t{1000}}) {
    response_reader r;
    r.expect(false, false);
    const seen s = run(r, body + "extra", piece);
    REQUIRE(s.events.size() == 2);
    CHECK(s.events[1] == response_event::done);
    CHECK(s.consumed == body.size());
  }
}

TEST_CASE("response_reader.no_body_for_head_204_304_and_1xx") {
  response_reader r;
  r.expect(true, false);
  std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n";
  seen s = run(r, head);
  CHECK(s.events.back() == response_event::done);
  CHECK(s.consumed == head.size());

  for (const char* code : {"204 No Content", "304 Not Modified"}) {
    r.expect(false, false);
    head = std::string("HTTP/1.1 ") + code + "\r\nContent-Length: 10\r\n\r\n";
    s = run(r, head);
    CHECK(s.events.back() == response_event::done);
    CHECK(s.consumed == head.size());
    CHECK(r.keep_alive());
  }

  r.expect(false, false);
  const std::string answer = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n"
                             "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
  s = run(r, answer);
  REQUIRE(s.events.size() == 6);
  CHECK(s.events[1] == response_event::interim);
  CHECK(s.ends[1] == 25);
  CHECK(s.events[2] == response_event::status_line);
  CHECK(s.events[3] == response_event::interim);
  CHECK(s.events[5] == response_event::done);
  CHECK(r.status() == 201);
  CHECK(s.consumed == answer.size());
}

TEST_CASE("response_reader.close_delimited") {
  response_reader r;
  r.expect(false, false);
  const std::string head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nsome body";
  const seen s = run(r, head);
  CHECK(s.events.back() == response_event::status_line);
  CHECK(s.consumed == head.size());
  CHECK(r.finish().event == response_event::done);
  CHECK_FALSE(r.keep_alive());

  // Cut short: Content-Length promised more.
  r.expect(false, false);
  run(r, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
  CHECK(r.finish().event == response_event::error);
  // Never answered.
  r.expect(false, false);
  CHECK_FALSE(r.started());
  CHECK(r.finish().event == response_event::error);
}

TEST_CASE("response_reader.switching_protocols") {
  response_reader r;
  r.expect(false, true);
  const std::string head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\n\r\n";
  const seen s = run(r, head + "\x81\x02hi");
  CHECK(s.events.back() == response_event::switched);
  CHECK(s.consumed == head.size());

  // A refused upgrade is an ordinary response.
  r.expect(false, true);
  const std::string no = "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n";
  CHECK(run(r, no).events.back() == response_event::done);

  // A 101 nobody asked for.
  r.expect(false, false);
  CHECK(run(r, head).events.back() == response_event::error);
}

TEST_CASE("response_reader.not_http") {
  response_reader r;
  r.expect(false, false);
  CHECK(run(r, "SSH-2.0-OpenSSH\r\n").events.back() == response_event::error);
  r.expect(false, false);
  CHECK(run(r, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
            .events.back() == response_event::error);
}

TEST_CASE("response_reader.empty_lines_before_the_status_line") {
  response_reader r;
  r.expect(false, false);
  const std::string answer = "\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx";
  const seen s = run(r, answer);
  REQUIRE(s.events.size() == 2);
  CHECK(s.ends[0] == 21);
  CHECK(s.events[1] == response_event::done);
  CHECK(s.consumed == answer.size());
}
