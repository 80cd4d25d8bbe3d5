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
  CHECK(e.to_string() == "localhost:1");  // the operator's name, not the address it found
  CHECK(e.addr_len > 0);
  CHECK_FALSE(parse_endpoint("127.0.0.1:70000", e, err));
  CHECK(err.find("out of range") != std::string::npos);
  CHECK_FALSE(parse_endpoint("127.0.0.1:0", e, err));
  CHECK_FALSE(parse_endpoint("nohost", e, err));
  CHECK_FALSE(parse_endpoint(":80", e, err));
  CHECK(err.find("no host") != std::string::npos);
  CHECK_FALSE(parse_endpoint("[localhost]:80", e, err));
  CHECK(err.find("brackets") != std::string::npos);
}

TEST_CASE("parse.names_are_resolved_or_refused") {
  endpoint e;
  std::string err;
  // A name is looked up, not rejected for not being numeric; `.invalid` never resolves.
  CHECK_FALSE(parse_endpoint("no-such-host.invalid:80", e, err));
  CHECK_MESSAGE(err.find("cannot resolve 'no-such-host.invalid' (") == 0, err);
  CHECK((e.host.empty() && e.addr_len == 0));  // `out` untouched on failure
}

TEST_CASE("parse.endpoint_longer_than_the_table_field_is_refused") {
  endpoint e;
  std::string err;
  const auto name = [](std::size_t chars) {  // a name of `chars` characters that cannot resolve
    return std::string(chars - 8, 'a') + ".invalid";
  };
  // "HOST:80" of exactly max_endpoint_chars gets as far as the resolver; one more is refused.
  CHECK_FALSE(parse_endpoint(name(max_endpoint_chars - 3) + ":80", e, err));
  CHECK_MESSAGE(err.find("cannot resolve") != std::string::npos, err);
  CHECK_FALSE(parse_endpoint(name(max_endpoint_chars - 2) + ":80", e, err));
  CHECK_MESSAGE(err.find("is 64 characters; HOST:PORT may be at most 63") != std::string::npos,
                err);
  // The longest DNS name (253 characters) is refused the same way, before any lookup.
  const std::string label(63, 'b');
  const std::string longest_dns = label + "." + label + "." + label + "." + std::string(61, 'c');
  REQUIRE(longest_dns.size() == 253);
  CHECK_FALSE(parse_endpoint(longest_dns + ":8080", e, err));
  CHECK_MESSAGE(err.find("is 258 characters") != std::string::npos, err);
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

TEST_CASE("parse.backend_tls_options") {
  backend_config b;
  std::string err;
  CHECK(parse_backend("127.0.0.1:9443,tls,sni=app.internal,ca=/etc/ca.pem,weight=2", b, err));
  CHECK(b.tls.enabled);
  CHECK(b.tls.sni == "app.internal");
  CHECK(b.tls.ca_file == "/etc/ca.pem");
  CHECK(b.weight == 2);
  CHECK(parse_backend("127.0.0.1:9443,tls,ca=certs/ca.pem", b, err));
  CHECK(b.tls.ca_file.front() == '/');  // made absolute against the current directory
  CHECK(b.tls.ca_file.ends_with("/certs/ca.pem"));
  CHECK(b.tls.sni.empty());
  CHECK(parse_backend("127.0.0.1:9443", b, err));
  CHECK_FALSE(b.tls.enabled);  // nothing left over from the previous parse
  CHECK(b.tls.ca_file.empty());

  CHECK_FALSE(parse_backend("127.0.0.1:9443,sni=app.internal", b, err));
  CHECK(err == "'sni=app.internal' in '127.0.0.1:9443,sni=app.internal' needs tls "
               "(HOST:PORT,tls,sni=app.internal)");
  CHECK_FALSE(parse_backend("127.0.0.1:9443,ca=/x.pem,weight=1", b, err));
  CHECK(err.find("'ca=/x.pem'") == 0);
  CHECK(err.find("needs tls") != std::string::npos);
  CHECK_FALSE(parse_backend("127.0.0.1:9443,tls,verify=none", b, err));
  CHECK(err.find("is not weight=N, maxconn=N, slowstart=DURATION, tls, sni=NAME or ca=FILE") !=
        std::string::npos);
  CHECK_FALSE(parse_backend("127.0.0.1:9443,tls,tls", b, err));
  CHECK(err.find("repeats tls") != std::string::npos);
  CHECK_FALSE(parse_backend("127.0.0.1:9443,tls,sni=a b", b, err));
  CHECK_FALSE(parse_backend("127.0.0.1:9443,tls,sni=", b, err));
  CHECK_FALSE(parse_backend("127.0.0.1:9443,tls,ca=", b, err));
  CHECK_FALSE(parse_backend("127.0.0.1:9443,tls,ca=/" + std::string(300, 'a'), b, err));
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
  // Too large is refused, never wrapped around to something small.
  CHECK((parse_size("2047m", v, err) && v == 2047u << 20));
  CHECK_FALSE(parse_size("2048m", v, err));
  CHECK_FALSE(parse_size("17592186044417m", v, err));  // x 1 MiB wraps to 1 MiB in 64 bits
  CHECK((parse_duration_ms("4294967s", v, err) && v == 4294967000u));
  CHECK_FALSE(parse_duration_ms("4294968s", v, err));
  CHECK_FALSE(parse_duration_ms("18446744073709552h", v, err));
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

TEST_CASE("run_options.backend_names_keep_their_name") {
  config c;
  auto r = parse({"--listen", "localhost:8080", "--backend", "localhost:9001,weight=3"}, c);
  REQUIRE_MESSAGE(r.ok, r.message);
  CHECK(c.listen.to_string() == "localhost:8080");
  CHECK(c.backends[0].where.to_string() == "localhost:9001");
  CHECK(c.backends[0].weight == 3);
  CHECK(c.backends[0].where.addr_len > 0);
}

TEST_CASE("run_options.bad_flags_name_the_flag") {
  struct bad_case {
    std::vector<std::string> args;
    std::string flag;
  };
  const bad_case cases[] = {
      {{"--backend", "127.0.0.1:9001", "--bogus"}, "--bogus"},
      {{"--listen", "nonsense", "--backend", "127.0.0.1:9001"}, "--listen"},
      {{"--listen", "127.0.0.1:99999", "--backend", "127.0.0.1:9001"}, "--listen"},
      {{"--listen", "127.0.0.1:8080"}, "--backend"},
      {{"--backend", "127.0.0.1:9001", "--workers", "0"}, "--workers"},
      {{"--backend", "127.0.0.1:9001", "--balance", "fastest"}, "--balance"},
      {{"--backend", "127.0.0.1:9001", "--check-interval", "often"}, "--check-interval"},
      {{"--backend", "no-such-host.invalid:80"},
       "--backend: cannot resolve 'no-such-host.invalid'"},
      {{"--listen", "no-such-host.invalid:80", "--backend", "127.0.0.1:9001"},
       "--listen: cannot resolve 'no-such-host.invalid'"},
      {{"--backend", std::string(70, 'x') + ":80"},
       "--backend: '" + std::string(70, 'x') + ":80' is 73 characters"},
  };
  for (const auto& bc : cases) {
    config c;
    auto r = parse(bc.args, c);
    CHECK_FALSE(r.ok);
    CHECK_MESSAGE(r.message.find(bc.flag) != std::string::npos, r.message);
  }
}

TEST_CASE("parse.backend_shaping_options") {
  backend_config b;
  std::string err;
  CHECK(parse_backend("127.0.0.1:9002,maxconn=30,slowstart=10s,weight=3", b, err));
  CHECK(b.maxconn == 30);
  CHECK(b.slowstart_ms == 10'000);
  CHECK(b.weight == 3);
  CHECK(parse_backend("127.0.0.1:9002", b, err));
  CHECK(b.maxconn == 0);
  CHECK(b.slowstart_ms == 0);
  CHECK_FALSE(parse_backend("127.0.0.1:9002,maxconn=0", b, err));
  CHECK(err.find("maxconn=0") != std::string::npos);
  CHECK_FALSE(parse_backend("127.0.0.1:9002,slowstart=2h", b, err));
  CHECK_FALSE(parse_backend("127.0.0.1:9002,weight=2,weight=3", b, err));
  CHECK(err.find("repeats weight") != std::string::npos);
  CHECK_FALSE(parse_backend("127.0.0.1:9002,maxconn", b, err));
  CHECK_FALSE(parse_backend("127.0.0.1:9002,", b, err));
}
