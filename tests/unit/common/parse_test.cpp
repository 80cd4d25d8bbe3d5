#include <doctest/doctest.h>

#include "common/parse.h"
#include "common/run_options.h"

using namespace wslb;

TEST_CASE("parse.endpoints") {
  endpoint e;
  std::string err;
  CHECK(parse_endpoint("127.0.0.1:8080", e, err));
  CHECK(e.port == 8080);
  CHECK(e.to_string() == "127.0.0.1:8080");
  CHECK(parse_endpoint("[::1]:9", e, err));
  CHECK(e.to_string() == "[::1]:9");
  CHECK(parse_endpoint("localhost:1", e, err));
  CHECK(e.host == "127.0.0.1");
  CHECK_FALSE(parse_endpoint("127.0.0.1:70000", e, err));
  CHECK(err.find("out of range") != std::string::npos);
  CHECK_FALSE(parse_endpoint("127.0.0.1:0", e, err));
  CHECK_FALSE(parse_endpoint("nohost", e, err));
  CHECK_FALSE(parse_endpoint("example.com:80", e, err));
  CHECK(err.find("numeric") != std::string::npos);
}

TEST_CASE("parse.backend_weights") {
  backend_config b;
  std::string err;
  CHECK(parse_backend("127.0.0.1:9002,weight=2", b, err));
  CHECK(b.weight == 2);
  CHECK(parse_backend("127.0.0.1:9002", b, err));
  CHECK(b.weight == 1);
  CHECK_FALSE(parse_backend("127.0.0.1:9002,weight=0", b, err));
  CHECK_FALSE(parse_backend("127.0.0.1:9002,wait=3", b, err));
}

TEST_CASE("parse.durations_and_sizes") {
  std::uint32_t v = 0;
  std::string err;
  CHECK((parse_duration_ms("30s", v, err) && v == 30000));
  CHECK((parse_duration_ms("1500ms", v, err) && v == 1500));
  CHECK((parse_duration_ms("2m", v, err) && v == 120000));
  CHECK((parse_duration_ms("0", v, err) && v == 0));
  CHECK_FALSE(parse_duration_ms("soon", v, err));
  CHECK_FALSE(parse_duration_ms("5x", v, err));
  CHECK((parse_size("16k", v, err) && v == 16384));
  CHECK_FALSE(parse_size("16q", v, err));
}

TEST_CASE("parse.balance_modes") {
  balance_config b;
  std::string err;
  CHECK((parse_balance("cookie:sid", b, err) && b.mode == balance_mode::cookie && b.key == "sid"));
  CHECK((parse_balance("round-robin", b, err) && b.mode == balance_mode::round_robin));
  CHECK_FALSE(parse_balance("cookie:", b, err));
  CHECK_FALSE(parse_balance("fastest", b, err));
}

namespace {
run_parse_result parse(std::vector<std::string> args, config& c) { return parse_run_args(args, c); }
}  // namespace

TEST_CASE("run_options.valid_command_line") {
  config c;
  auto r = parse({"--listen", "127.0.0.1:8080", "--backend", "127.0.0.1:9001", "--backend",
                  "127.0.0.1:9002,weight=2", "--workers", "2", "--balance", "round-robin"},
                 c);
  REQUIRE_MESSAGE(r.ok, r.message);
  CHECK(c.backends.size() == 2);
  CHECK(c.backends[1].weight == 2);
  CHECK(c.workers == 2);
  CHECK(c.balance.mode == balance_mode::round_robin);
}

TEST_CASE("run_options.bad_flags_name_the_flag") {
  struct bad_case {
    std::vector<std::string> args;
    const char* flag;
  };
  const bad_case cases[] = {
      {{"--backend", "127.0.0.1:9001", "--bogus"}, "--bogus"},
      {{"--listen", "nonsense", "--backend", "127.0.0.1:9001"}, "--listen"},
      {{"--listen", "127.0.0.1:99999", "--backend", "127.0.0.1:9001"}, "--listen"},
      {{"--listen", "127.0.0.1:8080"}, "--backend"},
      {{"--backend", "127.0.0.1:9001", "--workers", "0"}, "--workers"},
      {{"--backend", "127.0.0.1:9001", "--balance", "fastest"}, "--balance"},
      {{"--backend", "127.0.0.1:9001", "--check-interval", "often"}, "--check-interval"},
  };
  for (const auto& bc : cases) {
    config c;
    auto r = parse(bc.args, c);
    CHECK_FALSE(r.ok);
    CHECK_MESSAGE(r.message.find(bc.flag) != std::string::npos, r.message);
  }
}
