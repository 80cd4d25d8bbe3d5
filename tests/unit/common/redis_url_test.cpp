#include <doctest/doctest.h>

#include "common/redis_url.h"
#include "common/run_options.h"

using namespace wslb;

namespace {
redis_target parsed(const std::string& text) {
  redis_target r;
  std::string error;
  REQUIRE_MESSAGE(parse_redis_url(text, r, error), error);
  return r;
}

std::string refused(const std::string& text) {
  redis_target r;
  std::string error;
  CHECK_FALSE(parse_redis_url(text, r, error));
  return error;
}
}  // namespace

TEST_CASE("redis_url.accepts_the_documented_forms") {
  redis_target r = parsed("redis://127.0.0.1:6380");
  CHECK(r.host == "127.0.0.1");
  CHECK(r.port == 6380);
  CHECK(r.password.empty());
  CHECK(r.db == 0);

  r = parsed("redis://:s3cr:et@redis.internal:7000/3");
  CHECK(r.host == "redis.internal");
  CHECK(r.port == 7000);
  CHECK(r.user.empty());
  CHECK(r.password == "s3cr:et");
  CHECK(r.db == 3);

  r = parsed("redis://wslb:pw@10.0.0.1");
  CHECK(r.user == "wslb");
  CHECK(r.password == "pw");
  CHECK(r.port == 6379);

  r = parsed("redis://[::1]:6379/15");
  CHECK(r.host == "::1");
  CHECK(r.db == 15);
  CHECK(r.to_string() == "[::1]:6379/15");
}

TEST_CASE("redis_url.never_shows_the_password") {
  CHECK(parsed("redis://:hunter2@h:1/2").to_string() == "h:1/2");
}

TEST_CASE("redis_url.refuses_what_it_cannot_use") {
  CHECK(refused("http://127.0.0.1:6379").find("not a redis:// URL") != std::string::npos);
  CHECK(refused("redis://").find("no host") != std::string::npos);
  CHECK(refused("redis://h:0").find("port") != std::string::npos);
  CHECK(refused("redis://h:65536").find("port") != std::string::npos);
  CHECK(refused("redis://h:abc").find("port") != std::string::npos);
  CHECK(refused("redis://h:").find("empty port") != std::string::npos);
  CHECK(refused("redis://h:1/16").find("database") != std::string::npos);
  CHECK(refused("redis://h:1/x").find("database") != std::string::npos);
  CHECK(refused("redis://pw@h:1").find("':'") != std::string::npos);
  CHECK(refused("redis://:@h:1").find("empty password") != std::string::npos);
  CHECK(refused("redis://::1:6379").find("IPv6") != std::string::npos);
  CHECK(refused("redis://[::1:6379").find("'['") != std::string::npos);
  CHECK(refused("redis://h st:1").find("characters") != std::string::npos);
}

TEST_CASE("run_options.cluster_flags") {
  config c;
  auto r = parse_run_args({"--backend", "127.0.0.1:9001", "--cluster", "redis://127.0.0.1:6379/2",
                           "--node-id", "web-a.1", "--cluster-interval", "250ms"},
                          c);
  REQUIRE_MESSAGE(r.ok, r.message);
  CHECK(c.cluster.enabled());
  CHECK(c.cluster.redis.db == 2);
  CHECK(c.cluster.node_id == "web-a.1");
  CHECK(c.cluster.interval_ms == 250);

  config off;
  r = parse_run_args({"--backend", "127.0.0.1:9001"}, off);
  REQUIRE(r.ok);
  CHECK_FALSE(off.cluster.enabled());

  const auto error_of = [](std::vector<std::string> args) {
    config x;
    args.insert(args.begin(), {"--backend", "127.0.0.1:9001"});
    const auto result = parse_run_args(args, x);
    CHECK_FALSE(result.ok);
    return result.message;
  };
  CHECK(error_of({"--cluster", "redis//h:1"}).rfind("--cluster: ", 0) == 0);
  CHECK(error_of({"--cluster", "redis://h:1", "--node-id", "a b"}).rfind("--node-id: ", 0) == 0);
  CHECK(error_of({"--node-id", "a"}).rfind("--node-id: needs --cluster", 0) == 0);
  CHECK(error_of({"--cluster", "redis://h:1", "--cluster-interval", "10ms"})
            .rfind("--cluster-interval: ", 0) == 0);
  CHECK(error_of({"--cluster", "redis://h:1", "--cluster-interval", "soon"})
            .rfind("--cluster-interval: ", 0) == 0);
}
