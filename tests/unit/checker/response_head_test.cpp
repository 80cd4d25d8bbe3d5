#include <doctest/doctest.h>

#include <string>

#include "checker/response_head.h"

using namespace wslb::checker;

TEST_CASE("response_head.status_line") {
  CHECK(response_status("HTTP/1.1 200 OK\r\n") == 200);
  CHECK(response_status("HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\n") == 503);
  CHECK(response_status("HTTP/1.1 101\r\n") == 101);
  CHECK(response_status("HTTP/1.1 204 \r\n") == 204);
  CHECK(response_status("HTTP/1.1 200 O") == 0);  // not complete yet
  CHECK(response_status("") == 0);
  CHECK(response_status("SSH-2.0-OpenSSH_9.2\r\n") == -1);
  CHECK(response_status("HTTP/1.1 2000 OK\r\n") == -1);
  CHECK(response_status("HTTP/2 200\r\n") == -1);
  CHECK(response_status("HTTP/1.1 20x OK\r\n") == -1);
}

TEST_CASE("response_head.head_end_and_header_value") {
  const std::string head =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nconnection:Upgrade\r\n"
      "SEC-WEBSOCKET-ACCEPT:   s3pPLMBiTxaQ9kYGzzhZRbK+xOo=  \r\n\r\nframes";
  CHECK(head_end(head) == head.find("frames"));
  CHECK(head_end("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\n") == 0);
  REQUIRE(header_value(head, "Sec-WebSocket-Accept"));
  CHECK(*header_value(head, "Sec-WebSocket-Accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  CHECK(*header_value(head, "Connection") == "Upgrade");
  CHECK_FALSE(header_value(head, "Sec-WebSocket-Protocol"));
  // The status line is not a header, and nothing after the blank line is either.
  CHECK_FALSE(header_value("HTTP/1.1 101 X: y\r\n\r\nA: b\r\n", "A"));
}
