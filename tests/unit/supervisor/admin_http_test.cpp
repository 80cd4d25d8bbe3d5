#include <doctest/doctest.h>

#include "supervisor/admin_http.h"

using namespace wslb::supervisor;

TEST_CASE("admin_http.head_length_waits_for_the_blank_line") {
  CHECK_FALSE(admin_head_length("GET / HTTP/1.1\r\nHost: x\r\n").has_value());
  CHECK(admin_head_length("GET / HTTP/1.1\r\nHost: x\r\n\r\nbody") == 27u);
  CHECK(admin_head_length("GET / HTTP/1.0\n\n") == 16u);
}

TEST_CASE("admin_http.parses_path_query_and_the_headers_it_needs") {
  const auto r = parse_admin_request(
      "GET /metrics?a=1&token=s%20x HTTP/1.1\r\nHost: h\r\nAUTHORIZATION:  Bearer abc \r\n"
      "Accept: application/openmetrics-text\r\n\r\n");
  REQUIRE(r.has_value());
  CHECK(r->method == "GET");
  CHECK(r->path == "/metrics");
  CHECK(r->query == "a=1&token=s%20x");
  CHECK(r->authorization == "Bearer abc");
  CHECK(r->accept == "application/openmetrics-text");
  CHECK(query_parameter(r->query, "token") == "s x");
  CHECK(query_parameter(r->query, "a") == "1");
  CHECK(query_parameter(r->query, "b").empty());
}

TEST_CASE("admin_http.refuses_malformed_heads") {
  CHECK_FALSE(parse_admin_request("GET\r\n\r\n").has_value());
  CHECK_FALSE(parse_admin_request("GET metrics HTTP/1.1\r\n\r\n").has_value());
  CHECK_FALSE(parse_admin_request("GET / HTTP/2\r\n\r\n").has_value());
  CHECK_FALSE(parse_admin_request("G(T / HTTP/1.1\r\n\r\n").has_value());
  CHECK_FALSE(parse_admin_request("GET / HTTP/1.1\r\nno colon here\r\n\r\n").has_value());
  CHECK_FALSE(parse_admin_request("GET / HTTP/1.1\r\nBad Name: x\r\n\r\n").has_value());
}

TEST_CASE("admin_http.token_from_bearer_header_or_query") {
  admin_request r;
  CHECK(admin_authorized(r, ""));
  CHECK_FALSE(admin_authorized(r, "secret"));
  r.authorization = "Bearer secret";
  CHECK(admin_authorized(r, "secret"));
  r.authorization = "bearer secret";
  CHECK(admin_authorized(r, "secret"));
  r.authorization = "Bearer secreT";
  CHECK_FALSE(admin_authorized(r, "secret"));
  r.authorization = "Bearer secret2";
  CHECK_FALSE(admin_authorized(r, "secret"));
  r.authorization = "Basic c2VjcmV0";
  CHECK_FALSE(admin_authorized(r, "secret"));
  r.authorization.clear();
  r.query = "token=secret";
  CHECK(admin_authorized(r, "secret"));
  r.query = "token=";
  CHECK_FALSE(admin_authorized(r, "secret"));
}

TEST_CASE("admin_http.response_has_length_and_closes") {
  admin_response r = plain_admin_response(401, "no");
  r.extra_headers = "WWW-Authenticate: Bearer\r\n";
  const std::string bytes = render_admin_response(r);
  CHECK(bytes.rfind("HTTP/1.1 401 Unauthorized\r\n", 0) == 0);
  CHECK(bytes.find("Content-Length: 3\r\n") != std::string::npos);
  CHECK(bytes.find("Connection: close\r\n") != std::string::npos);
  CHECK(bytes.find("WWW-Authenticate: Bearer\r\n\r\nno\n") != std::string::npos);
}
