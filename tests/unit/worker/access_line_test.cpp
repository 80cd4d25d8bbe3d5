#include <doctest/doctest.h>

#include <string>

#include "worker/access_line.h"

using wslb::worker::access_line;
using wslb::worker::render_access_line;

TEST_CASE("access_line.renders_every_field") {
  access_line l;
  l.time_ms = 1'795'000'000'123;  // 2026-11-18T11:06:40.123Z
  l.client = "[::1]:41234";
  l.forwarded_for = "203.0.113.5, 10.0.0.2";
  l.backend = "127.0.0.1:9001";
  l.kind = "websocket";
  l.method = "GET";
  l.path = "/chat?room=1";
  l.host = "example.test";
  l.user_agent = "ua/1";
  l.status = 101;
  l.duration_us = 12'345'678;
  l.bytes_in = 300;
  l.bytes_out = 4096;
  l.close_cause = "client";
  l.ws_close_code = 1000;
  l.worker = 3;
  std::string out;
  render_access_line(l, out);
  CHECK(out ==
        "{\"time\":\"2026-11-18T11:06:40.123Z\",\"client\":\"[::1]:41234\","
        "\"forwarded_for\":\"203.0.113.5, 10.0.0.2\",\"backend\":\"127.0.0.1:9001\","
        "\"kind\":\"websocket\",\"method\":\"GET\",\"path\":\"/chat?room=1\","
        "\"host\":\"example.test\",\"user_agent\":\"ua/1\",\"status\":101,"
        "\"duration_ms\":12345.678,\"bytes_in\":300,\"bytes_out\":4096,"
        "\"close_cause\":\"client\",\"ws_close_code\":1000,\"worker\":3}");
}

TEST_CASE("access_line.absent_values_are_null") {
  access_line l;
  l.time_ms = 0;
  l.client = "127.0.0.1:1";
  l.kind = "tcp";
  l.duration_us = 7;
  std::string out;
  render_access_line(l, out);
  CHECK(out ==
        "{\"time\":\"1970-01-01T00:00:00.000Z\",\"client\":\"127.0.0.1:1\","
        "\"forwarded_for\":null,\"backend\":null,\"kind\":\"tcp\",\"method\":null,"
        "\"path\":null,\"host\":null,\"user_agent\":null,\"status\":null,"
        "\"duration_ms\":0.007,\"bytes_in\":0,\"bytes_out\":0,\"close_cause\":null,"
        "\"ws_close_code\":null,\"worker\":0}");
}

TEST_CASE("access_line.client_text_cannot_break_the_line_or_add_a_field") {
  access_line l;
  l.client = "127.0.0.1:1";
  l.kind = "http";
  l.path = "/a\"b\\c\n{\"status\":999}\r\x01\x7f";
  l.user_agent = "\",\"kind\":\"forged";
  std::string out;
  render_access_line(l, out);
  CHECK(out.find('\n') == std::string::npos);
  CHECK(out.find('\r') == std::string::npos);
  CHECK(out.find("\"path\":\"/a\\\"b\\\\c\\u000a{\\\"status\\\":999}\\u000d\\u0001\\u007f\"") !=
        std::string::npos);
  CHECK(out.find("\"user_agent\":\"\\\",\\\"kind\\\":\\\"forged\"") != std::string::npos);
}
