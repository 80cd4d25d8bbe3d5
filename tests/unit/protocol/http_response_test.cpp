#include <doctest/doctest.h>

#include <string>
#include <string_view>

#include "protocol/http_response.h"

using namespace wslb::protocol;

TEST_CASE("http_response.error_answers_are_well_formed") {
  for (int status : {400, 408, 426, 431, 502, 503, 504}) {
    CAPTURE(status);
    const std::string_view r = error_response(status);
    REQUIRE_FALSE(r.empty());
    CHECK(r.substr(0, 13) == "HTTP/1.1 " + std::to_string(status) + " ");
    CHECK(r.find(reason_phrase(status)) == 13);
    CHECK(response_header(r, "Connection") == std::optional<std::string_view>("close"));
    CHECK(response_header(r, "content-type") == std::optional<std::string_view>("text/plain"));
    const std::size_t end = r.find("\r\n\r\n");
    REQUIRE(end != std::string_view::npos);
    const std::string_view body = r.substr(end + 4);
    CHECK(response_header(r, "Content-Length") ==
          std::optional<std::string_view>(std::to_string(body.size())));
    CHECK(body == std::string(reason_phrase(status)) + "\n");
    // The sniffer reads our own answers the same way.
    response_sniffer s;
    const sniff_result res = s.feed(r.data(), r.size());
    CHECK(res.status == sniff_status::complete);
    CHECK(res.head_bytes_in_feed == end + 4);
    CHECK(s.status_code() == status);
  }
  CHECK(response_header(error_response(426), "Sec-WebSocket-Version") ==
        std::optional<std::string_view>("13"));
  CHECK_FALSE(response_header(error_response(400), "Sec-WebSocket-Version").has_value());
  CHECK(error_response(200).empty());
  CHECK(error_response(0).empty());
}

TEST_CASE("http_response.busy_answer_says_when_to_retry") {
  const std::string r = busy_response(7);
  CHECK(r.rfind("HTTP/1.1 503 Service Unavailable\r\n", 0) == 0);
  CHECK(response_header(r, "Retry-After") == std::optional<std::string_view>("7"));
  const std::size_t end = r.find("\r\n\r\n");
  REQUIRE(end != std::string::npos);
  CHECK(response_header(r, "Content-Length") ==
        std::optional<std::string_view>(std::to_string(r.size() - end - 4)));
  // Apart from Retry-After it is the plain 503.
  std::string without = r;
  without.erase(without.find("Retry-After: 7\r\n"), 16);
  CHECK(without == error_response(503));
}

TEST_CASE("http_response.sniffer_101_with_frames_behind") {
  const std::string head =
      "HTTP/1.1 101 Switching Protocols\r\n"
      "Upgrade: websocket\r\n"
      "Connection: Upgrade\r\n"
      "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
      "\r\n";
  const std::string input = head + "\x81\x02hi";
  for (std::size_t cut = 0; cut <= input.size(); ++cut) {
    CAPTURE(cut);
    response_sniffer s;
    sniff_result a = s.feed(input.data(), cut);
    if (cut >= head.size()) {
      CHECK(a.status == sniff_status::complete);
      CHECK(a.head_bytes_in_feed == head.size());
    } else {
      CHECK(a.status == sniff_status::need_more);
      CHECK_FALSE(s.switched_protocols());
      const sniff_result b = s.feed(input.data() + cut, input.size() - cut);
      CHECK(b.status == sniff_status::complete);
      CHECK(b.head_bytes_in_feed == head.size() - cut);
    }
    CHECK(s.switched_protocols());
    CHECK(s.status_code() == 101);
    // Later feeds do not move it.
    CHECK(s.feed("HTTP", 4).status == sniff_status::complete);
  }
  CHECK(response_header(head, "sec-websocket-accept") ==
        std::optional<std::string_view>("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
  CHECK_FALSE(response_header(head, "Switching Protocols").has_value());
}

TEST_CASE("http_response.sniffer_other_answers") {
  auto sniff = [](std::string_view in, std::size_t max = 16 * 1024) {
    response_sniffer s(max);
    const sniff_result r = s.feed(in.data(), in.size());
    return std::pair<sniff_status, int>(r.status, s.status_code());
  };
  CHECK(sniff("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n") ==
        std::pair(sniff_status::complete, 200));
  CHECK(sniff("HTTP/1.0 302 Found\n\n") == std::pair(sniff_status::complete, 302));
  CHECK(sniff("HTTP/1.1 204\r\n\r\n") == std::pair(sniff_status::complete, 204));
  CHECK(sniff("HTTP/1.1 101 Switching") == std::pair(sniff_status::need_more, 101));
  CHECK(sniff("HTTP/1.1 10") == std::pair(sniff_status::need_more, 0));
  CHECK(sniff("HTTP/2 200\r\n\r\n").first == sniff_status::invalid);
  CHECK(sniff("SSH-2.0-OpenSSH\r\n").first == sniff_status::invalid);
  CHECK(sniff("HTTP/1.1 1011 x\r\n\r\n").first == sniff_status::invalid);
  CHECK(sniff("HTTP/1.1 20x OK\r\n\r\n").first == sniff_status::invalid);
  CHECK(sniff("\x81\x05hello").first == sniff_status::invalid);
  CHECK(sniff("HTTP/1.1 200 OK\r\nX: y\r\n", 20).first == sniff_status::invalid);
  CHECK(sniff("HTTP/1.1 200 OK\r\n\r\n", 19).first == sniff_status::complete);

  response_sniffer s;
  CHECK(s.feed("HTTP/1.1 101 OK\r\n", 17).status == sniff_status::need_more);
  CHECK(s.status_code() == 101);
  CHECK_FALSE(s.switched_protocols());
  CHECK(s.feed("\r", 1).status == sniff_status::need_more);
  CHECK(s.feed("\n", 1).status == sniff_status::complete);
  CHECK(s.switched_protocols());
}
