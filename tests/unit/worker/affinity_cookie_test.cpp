#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "common/parse.h"
#include "worker/affinity_cookie.h"

using namespace wslb;
using namespace wslb::worker;

namespace {

std::vector<backend_config> backends_of(std::initializer_list<const char*> texts) {
  std::vector<backend_config> out;
  std::string error;
  for (const char* t : texts) {
    backend_config b;
    REQUIRE(parse_backend(t, b, error));
    out.push_back(b);
  }
  return out;
}

}  // namespace

TEST_CASE("affinity_cookie.ids_are_stable_opaque_and_distinct") {
  // Fixed values: the same in every worker, restart, reload and instance configured alike.
  CHECK(affinity_id("srv", "127.0.0.1:9001") == affinity_id("srv", "127.0.0.1:9001"));
  CHECK(affinity_id("srv", "127.0.0.1:9001").size() == 16);
  CHECK(affinity_id("srv", "127.0.0.1:9001") != affinity_id("srv", "127.0.0.1:9002"));
  CHECK(affinity_id("srv", "127.0.0.1:9001") != affinity_id("other", "127.0.0.1:9001"));
  CHECK(affinity_id("srv", "127.0.0.1:9001").find("127") == std::string::npos);

  sticky_cookie_config cfg;
  std::string error;
  REQUIRE(parse_sticky_cookie("srv,max-age=1h", cfg, error));
  CHECK(cfg.max_age_s == 3600);
  const auto backends = backends_of({"127.0.0.1:9001", "127.0.0.1:9002,weight=3"});
  const affinity_cookie a(cfg, backends);
  REQUIRE(a.enabled());
  const std::string id1 = affinity_id("srv", "127.0.0.1:9002");
  CHECK(a.backend_of(id1) == 1);
  CHECK(a.backend_of(affinity_id("srv", "127.0.0.1:9001")) == 0);
  CHECK(a.backend_of("0123456789abcdef") == -1);
  CHECK(a.backend_of("") == -1);
  CHECK(a.set_cookie_line(1) ==
        "Set-Cookie: srv=" + id1 + "; Path=/; HttpOnly; SameSite=Lax; Max-Age=3600\r\n");
  // The order of --backend flags does not change a backend's id.
  const affinity_cookie b(cfg, backends_of({"127.0.0.1:9002", "127.0.0.1:9001"}));
  CHECK(b.backend_of(id1) == 0);

  const affinity_cookie off(sticky_cookie_config{}, backends);
  CHECK_FALSE(off.enabled());
  CHECK(off.backend_of(id1) == -1);
}

TEST_CASE("affinity_cookie.flag_values") {
  sticky_cookie_config cfg;
  std::string error;
  REQUIRE(parse_sticky_cookie("WSLB_SRV", cfg, error));
  CHECK(cfg.name == "WSLB_SRV");
  CHECK(cfg.max_age_s == 0);
  for (const char* bad : {"", "a b", "a;b", "srv,max-age=", "srv,max-age=500ms", "srv,ttl=1h",
                          "srv,max-age=x"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_sticky_cookie(bad, cfg, error));
  }
}
