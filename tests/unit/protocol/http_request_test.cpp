#include <doctest/doctest.h>

#include <string>
#include <string_view>

#include "protocol/http_request.h"

using namespace wslb::protocol;

namespace {

const std::string upgrade_head =
    "GET /chat?sid=abc&x=1 HTTP/1.1\r\n"
    "Host: example.com\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "\r\n";

head_feed_result feed_all(request_head_parser& p, std::string_view s) {
  return p.feed(s.data(), s.size());
}

// The status the parser answers for `head` fed in one piece (0 when it completes).
int status_of(const std::string& head, std::size_t max = 16 * 1024) {
  request_head_parser p(max);
  const head_feed_result r = feed_all(p, head);
  if (r.status == head_status::complete) return 0;
  if (r.status == head_status::error) return r.http_status;
  return -1;  // still wants more
}

std::string ws_head(std::string_view method, std::string_view key, std::string_view version) {
  std::string h = std::string(method) + " / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\n";
  if (!key.empty()) h += "Sec-WebSocket-Key: " + std::string(key) + "\r\n";
  if (!version.empty()) h += "Sec-WebSocket-Version: " + std::string(version) + "\r\n";
  return h + "\r\n";
}

}  // namespace

TEST_CASE("http_request.websocket_upgrade_in_one_feed") {
  request_head_parser p(16 * 1024);
  const std::string frames = "\x81\x85\x01\x02\x03\x04hello";
  const std::string input = upgrade_head + frames;
  const head_feed_result r = feed_all(p, input);
  REQUIRE(r.status == head_status::complete);
  CHECK(r.head_bytes_in_feed == upgrade_head.size());
  CHECK(p.head() == upgrade_head);
  CHECK(p.method() == "GET");
  CHECK(p.target() == "/chat?sid=abc&x=1");
  CHECK(p.is_websocket_upgrade());
  CHECK(p.keep_alive());
  CHECK(p.http_major() == 1);
  CHECK(p.http_minor() == 1);
  CHECK(p.header_count() == 5);
  CHECK(p.header("sec-websocket-key") == std::optional<std::string_view>("dGhlIHNhbXBsZSBub25jZQ=="));
  CHECK(p.header("HOST") == std::optional<std::string_view>("example.com"));
  CHECK_FALSE(p.header("Cookie").has_value());
  // Later feeds look at nothing.
  const head_feed_result again = p.feed("xyz", 3);
  CHECK(again.status == head_status::complete);
}

TEST_CASE("http_request.byte_by_byte_and_every_split") {
  {
    request_head_parser p(16 * 1024);
    for (std::size_t i = 0; i < upgrade_head.size(); ++i) {
      const head_feed_result r = p.feed(&upgrade_head[i], 1);
      if (i + 1 < upgrade_head.size()) {
        REQUIRE(r.status == head_status::need_more);
      } else {
        REQUIRE(r.status == head_status::complete);
        CHECK(r.head_bytes_in_feed == 1);
      }
    }
    CHECK(p.header("Upgrade") == std::optional<std::string_view>("websocket"));
    CHECK(p.target() == "/chat?sid=abc&x=1");
  }
  const std::string input = upgrade_head + "EARLY";
  for (std::size_t cut = 1; cut < input.size(); ++cut) {
    request_head_parser p(16 * 1024);
    const head_feed_result a = p.feed(input.data(), cut);
    if (cut >= upgrade_head.size()) {
      REQUIRE(a.status == head_status::complete);
      CHECK(a.head_bytes_in_feed == upgrade_head.size());
      continue;
    }
    REQUIRE(a.status == head_status::need_more);
    const head_feed_result b = p.feed(input.data() + cut, input.size() - cut);
    REQUIRE(b.status == head_status::complete);
    CHECK(b.head_bytes_in_feed == upgrade_head.size() - cut);
    CHECK(p.is_websocket_upgrade());
    CHECK(p.header("Sec-WebSocket-Version") == std::optional<std::string_view>("13"));
    CHECK(p.header_name(0) == "Host");
    CHECK(p.header_value(0) == "example.com");
  }
}

TEST_CASE("http_request.plain_get_with_body_not_consumed") {
  request_head_parser p(1024);
  const std::string head = "POST /submit HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\n";
  const head_feed_result r = feed_all(p, head + "body");
  REQUIRE(r.status == head_status::complete);
  CHECK(r.head_bytes_in_feed == head.size());
  CHECK_FALSE(p.is_websocket_upgrade());
  CHECK(p.method() == "POST");
}

TEST_CASE("http_request.keep_alive") {
  auto keep = [](const std::string& head) {
    request_head_parser p(1024);
    REQUIRE(feed_all(p, head).status == head_status::complete);
    return p.keep_alive();
  };
  CHECK(keep("GET / HTTP/1.1\r\nHost: h\r\n\r\n"));
  CHECK_FALSE(keep("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"));
  CHECK_FALSE(keep("GET / HTTP/1.0\r\n\r\n"));
  CHECK(keep("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
}

TEST_CASE("http_request.an_upgrade_that_asks_to_close_still_asks_after_forwarding") {
  // Found by fuzzing: the backend may refuse the upgrade and answer as plain HTTP.
  request_head_parser p(1024);
  REQUIRE(feed_all(p, "GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade, close\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n")
              .status == head_status::complete);
  REQUIRE(p.is_websocket_upgrade());
  REQUIRE_FALSE(p.keep_alive());
  const std::string out = p.forwarded_head(forwarding{false, "192.0.2.1", false});
  CHECK(out.find("Connection: Upgrade, close\r\n") != std::string::npos);
  request_head_parser again(1024);
  REQUIRE(feed_all(again, out).status == head_status::complete);
  CHECK(again.is_websocket_upgrade());
  CHECK_FALSE(again.keep_alive());
}

TEST_CASE("http_request.errors") {
  CHECK(status_of("GET / HTTP/1.1\r\nHost: h\r\n\r\n") == 0);
  CHECK(status_of("GARBAGE\r\n\r\n") == 400);
  CHECK(status_of("GET / HTTX/1.1\r\n\r\n") == 400);
  CHECK(status_of("GET / HTTP/1.1\r\nBad Header: x\r\n\r\n") == 400);
  CHECK(status_of("GET / HTTP/1.1\r\nHost: h\r\nX: a\x01z\r\n\r\n") == 400);
  CHECK(status_of("GET / HTTP/1.1\r\nHost: h\r\nX: \x0e\r\n\r\n") == 400);  // found by fuzzing
  CHECK(status_of("GET / HTTP/1.1\r\nHost: h\r\nX: a\x7f\r\n\r\n") == 400);
  CHECK(status_of("GET / HTTP/1.1\r\nHost: h\r\nX: caf\xc3\xa9\tok\r\n\r\n") == 0);  // obs-text, tab
  CHECK(status_of("GET /a\tb HTTP/1.1\r\nHost: h\r\n\r\n") == 400);
  CHECK(status_of("GET / HTTP/1.1\r\n\r\n") == 400);                          // no Host
  CHECK(status_of("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n") == 400);    // two Hosts
  CHECK(status_of("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n") == 400);  // obs-fold
  CHECK(status_of("GET / HTTP/2.0\r\nHost: h\r\n\r\n") == 400);
  CHECK(status_of("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n") ==
        400);
  CHECK(status_of("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                  "Content-Length: 5\r\n\r\n") == 400);  // a request-smuggling shape

  CHECK(status_of(ws_head("GET", "dGhlIHNhbXBsZSBub25jZQ==", "13")) == 0);
  CHECK(status_of(ws_head("POST", "dGhlIHNhbXBsZSBub25jZQ==", "13")) == 400);
  CHECK(status_of(ws_head("GET", "", "13")) == 400);
  CHECK(status_of(ws_head("GET", "short", "13")) == 400);
  CHECK(status_of(ws_head("GET", "dGhlIHNhbXBsZSBub25jZQ==", "8")) == 426);
  CHECK(status_of(ws_head("GET", "dGhlIHNhbXBsZSBub25jZQ==", "")) == 426);
  CHECK(status_of(ws_head("GET", "", "8")) == 426);  // version first: tell old clients 13
  CHECK(status_of("GET / HTTP/1.0\r\nUpgrade: websocket\r\nSec-WebSocket-Key: "
                  "dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n") == 400);
  // Upgrade to something else is not a WebSocket request and is not checked as one.
  CHECK(status_of("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n") ==
        0);

  // An error sticks.
  request_head_parser p(1024);
  CHECK(feed_all(p, "BAD\r\n").http_status == 400);
  const head_feed_result again = feed_all(p, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
  CHECK(again.status == head_status::error);
  CHECK(again.http_status == 400);
}

TEST_CASE("http_request.max_header_size") {
  const std::string head = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";  // 27 bytes
  CHECK(status_of(head, head.size()) == 0);
  CHECK(status_of(head, head.size() - 1) == 431);
  CHECK(status_of(head + "tail", head.size()) == 0);  // the tail is body, not head
  // Trickled: the parser never holds more than the limit.
  request_head_parser p(100);
  std::string big = "GET / HTTP/1.1\r\nHost: h\r\nX-Long: " + std::string(200, 'a');
  head_feed_result r;
  std::size_t fed = 0;
  for (; fed < big.size(); ++fed) {
    r = p.feed(&big[fed], 1);
    if (r.status != head_status::need_more) break;
  }
  CHECK(r.status == head_status::error);
  CHECK(r.http_status == 431);
  CHECK(fed == 99);  // the 100th byte fills the buffer without ending the head
}

TEST_CASE("http_request.cookies_and_query") {
  request_head_parser p(1024);
  REQUIRE(feed_all(p, "GET /socket.io/?EIO=4&transport=polling&sid=Zx9_1&flag#frag HTTP/1.1\r\n"
                      "Host: h\r\n"
                      "Cookie: a=1; session=\"q w\" ; b=2\r\n"
                      "cookie: late=yes\r\n"
                      "\r\n")
              .status == head_status::complete);
  CHECK(p.cookie("a") == std::optional<std::string_view>("1"));
  CHECK(p.cookie("session") == std::optional<std::string_view>("q w"));
  CHECK(p.cookie("b") == std::optional<std::string_view>("2"));
  CHECK(p.cookie("late") == std::optional<std::string_view>("yes"));
  CHECK_FALSE(p.cookie("A").has_value());  // cookie names are case-sensitive
  CHECK_FALSE(p.cookie("missing").has_value());
  CHECK(p.query_param("sid") == std::optional<std::string_view>("Zx9_1"));
  CHECK(p.query_param("EIO") == std::optional<std::string_view>("4"));
  CHECK(p.query_param("flag") == std::optional<std::string_view>(""));
  CHECK_FALSE(p.query_param("frag").has_value());
  CHECK_FALSE(p.query_param("si").has_value());

  request_head_parser q(1024);
  REQUIRE(feed_all(q, "GET /plain HTTP/1.1\r\nHost: h\r\n\r\n").status == head_status::complete);
  CHECK_FALSE(q.query_param("sid").has_value());
  CHECK_FALSE(q.cookie("sid").has_value());
}

TEST_CASE("http_request.forwarded_head") {
  request_head_parser p(1024);
  REQUIRE(feed_all(p, "GET /x HTTP/1.1\r\n"
                      "Host:   h  \r\n"
                      "X-Forwarded-For: 10.0.0.1\r\n"
                      "X-Real-IP: 6.6.6.6\r\n"
                      "Accept: */*\r\n"
                      "x-forwarded-for: 10.0.0.2\r\n"
                      "X-Forwarded-Proto: https\r\n"
                      "\r\n")
              .status == head_status::complete);
  // Not from a trusted proxy: the client's forwarding headers are replaced, not appended to.
  const forwarding on{true, "192.0.2.7"};
  const std::string expected =
      "GET /x HTTP/1.1\r\n"
      "Host: h\r\n"
      "Accept: */*\r\n"
      "X-Forwarded-For: 192.0.2.7\r\n"
      "Forwarded: for=192.0.2.7;proto=http\r\n"
      "X-Forwarded-Proto: http\r\n"
      "X-Real-IP: 192.0.2.7\r\n"
      "\r\n";
  CHECK(p.forwarded_head(on) == expected);
  CHECK(p.forwarded_head_size(on) == expected.size());
  char small[16];
  CHECK(p.write_forwarded_head(small, sizeof small, on) == 0);

  const forwarding off{false, "192.0.2.7"};
  CHECK(p.forwarded_head(off) ==
        "GET /x HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.0.0.1\r\nX-Real-IP: 6.6.6.6\r\n"
        "Accept: */*\r\nx-forwarded-for: 10.0.0.2\r\nX-Forwarded-Proto: https\r\n\r\n");

  request_head_parser q(1024);
  REQUIRE(feed_all(q, "GET / HTTP/1.0\r\n\r\n").status == head_status::complete);
  CHECK(q.forwarded_head(forwarding{true, "::1"}) ==
        "GET / HTTP/1.0\r\nConnection: close\r\nX-Forwarded-For: ::1\r\n"
        "Forwarded: for=\"[::1]\";proto=http\r\nX-Forwarded-Proto: http\r\nX-Real-IP: ::1\r\n\r\n");
}

TEST_CASE("http_request.tokens") {
  CHECK(header_has_token("keep-alive, Upgrade", "upgrade"));
  CHECK(header_has_token("WebSocket", "websocket"));
  CHECK_FALSE(header_has_token("websockets", "websocket"));
  CHECK_FALSE(header_has_token("", "websocket"));
  CHECK(iequals("X-Real-IP", "x-real-ip"));
  CHECK_FALSE(iequals("X-Real-IP", "x-real-ip "));
}

namespace {

// Feeds a whole request (head, then body in pieces of `piece` bytes); returns the bytes the
// request took, or npos on an error.
std::size_t request_length(request_head_parser& p, std::string_view bytes, std::size_t piece) {
  const head_feed_result h = p.feed(bytes.data(), bytes.size());
  if (h.status != head_status::complete) return std::string_view::npos;
  std::size_t at = h.head_bytes_in_feed;
  if (p.start_body()) return at;
  while (at < bytes.size()) {
    const std::size_t n = std::min(piece, bytes.size() - at);
    const body_feed_result b = p.feed_body(bytes.data() + at, n);
    if (b.error) return std::string_view::npos;
    at += b.consumed;
    if (b.done) return at;
  }
  return std::string_view::npos;  // still wants more
}

}  // namespace

TEST_CASE("http_request.bodies_are_delimited_never_guessed") {
  const std::string next = "GET /next HTTP/1.1\r\nHost: h\r\n\r\n";
  const std::string cl = "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello";
  const std::string chunked = "POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nTrailer-A: 1\r\n\r\n";
  const std::string none = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n";
  for (std::size_t piece : {std::size_t{1}, std::size_t{4}, std::size_t{4096}}) {
    request_head_parser p(1024);
    CHECK(request_length(p, cl + next, piece) == cl.size());
    p.reset();
    CHECK(request_length(p, chunked + next, piece) == chunked.size());
    CHECK(p.header_count() == 2);  // the trailer is not a header of the head
    p.reset();
    CHECK(request_length(p, none + next, piece) == none.size());
    p.reset();
    CHECK(request_length(p, next, piece) == next.size());
    CHECK(p.target() == "/next");
  }
  request_head_parser bad(1024);
  CHECK(request_length(bad, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                       100) == std::string_view::npos);
}

TEST_CASE("http_request.undelimitable_requests_are_refused") {
  CHECK(status_of("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n") == 400);
  CHECK(status_of("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                  "Content-Length: 3\r\n\r\n") == 400);
  CHECK(status_of("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n") ==
        400);
  CHECK(status_of("CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n") == 400);
  std::string ws = ws_head("GET", "dGhlIHNhbXBsZSBub25jZQ==", "13");
  CHECK(status_of(ws) == 0);
  ws.insert(ws.size() - 2, "Content-Length: 4\r\n");
  CHECK(status_of(ws) == 400);
}

TEST_CASE("http_request.hop_by_hop_and_look_alikes") {
  request_head_parser p(2048);
  REQUIRE(feed_all(p, "POST /x HTTP/1.1\r\n"
                      "Host: h\r\n"
                      "Connection: keep-alive, X-Secret, Content-Length\r\n"
                      "X-Secret: s\r\n"
                      "Keep-Alive: timeout=5\r\n"
                      "TE: trailers\r\n"
                      "Upgrade: h2c\r\n"
                      "Content-Length: 0\r\n"
                      "X_Forwarded_For: 6.6.6.6\r\n"
                      "x_real_ip: 6.6.6.6\r\n"
                      "Forwarded: for=6.6.6.6\r\n"
                      "X-Forwarded-Host: evil\r\n"
                      "Accept: */*\r\n"
                      "\r\n")
              .status == head_status::complete);
  CHECK(p.forwarded_head(forwarding{true, "192.0.2.7"}) ==
        "POST /x HTTP/1.1\r\n"
        "Host: h\r\n"
        "Content-Length: 0\r\n"
        "Accept: */*\r\n"
        "X-Forwarded-For: 192.0.2.7\r\n"
        "Forwarded: for=192.0.2.7;proto=http\r\n"
        "X-Forwarded-Proto: http\r\n"
        "X-Real-IP: 192.0.2.7\r\n"
        "\r\n");
}

TEST_CASE("http_request.trusted_proxies_keep_and_append") {
  request_head_parser p(2048);
  REQUIRE(feed_all(p, "GET / HTTP/1.0\r\n"
                      "Connection: keep-alive\r\n"
                      "X-Forwarded-For: 10.0.0.1\r\n"
                      "X-Forwarded-For: 10.0.0.2\r\n"
                      "Forwarded: for=10.0.0.1;proto=https\r\n"
                      "X-Forwarded-Proto: https\r\n"
                      "X-Real-IP: 10.0.0.1\r\n"
                      "X_Real_IP: 6.6.6.6\r\n"
                      "\r\n")
              .status == head_status::complete);
  CHECK(p.forwarded_head(forwarding{true, "2001:db8::1", true}) ==
        "GET / HTTP/1.0\r\n"
        "X-Forwarded-Proto: https\r\n"
        "X-Real-IP: 10.0.0.1\r\n"
        "Connection: keep-alive\r\n"
        "X-Forwarded-For: 10.0.0.1, 10.0.0.2, 2001:db8::1\r\n"
        "Forwarded: for=10.0.0.1;proto=https, for=\"[2001:db8::1]\";proto=http\r\n"
        "\r\n");
}

TEST_CASE("http_request.max_header_size_above_the_parsers_own_limit") {
  // http-parser alone stops at 80 KiB; a --max-header-size above that must be what decides.
  const std::string head = "GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + std::string(150 * 1024, 'a') +
                           "\r\n\r\n";
  allow_header_size(256 * 1024);
  CHECK(status_of(head, 256 * 1024) == 0);
  CHECK(status_of(head, 100 * 1024) == 431);
  allow_header_size(16 * 1024);  // back to what the other tests expect
}
