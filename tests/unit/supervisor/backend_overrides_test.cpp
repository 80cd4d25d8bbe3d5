#include <doctest/doctest.h>

#include "tests/unit/table_image.h"

#include <string>
#include <vector>

#include "common/parse.h"
#include "shm/table_ops.h"
#include "supervisor/backend_overrides.h"
#include "supervisor/metrics_text.h"

using namespace wslb;
using supervisor::backend_override;
using supervisor::override_map;

namespace {
config two_backends(const char* second) {
  config cfg;
  for (const char* text : {"127.0.0.1:9001", second}) {
    backend_config b;
    std::string error;
    REQUIRE(parse_backend(text, b, error));
    b.row = cfg.backends.size();
    cfg.backends.push_back(b);
  }
  return cfg;
}
}  // namespace

TEST_CASE("backend_overrides.journal_text_round_trips") {
  override_map m;
  m["127.0.0.1:9001"] = {"127.0.0.1:9001,weight=1", shm::admin_state::drain, 0};
  m["127.0.0.1:9002"] = {"127.0.0.1:9002,weight=2", shm::admin_state::ready, 7};
  override_map back;
  CHECK(supervisor::parse_overrides(supervisor::render_overrides(m), back) == "");
  CHECK(back == m);
}

TEST_CASE("backend_overrides.malformed_text_says_where_and_changes_nothing") {
  override_map m;
  m["x:1"] = {"x:1,weight=1", shm::admin_state::maint, 0};
  CHECK(supervisor::parse_overrides("backend\ta:1\ta:1,weight=1\tsleep\t0\n", m) ==
        "line 1: unknown state 'sleep'");
  CHECK(supervisor::parse_overrides("# c\nbackend\ta:1\tb:1,weight=1\tdrain\t0\n", m) ==
        "line 2: the configuration line 'b:1,weight=1' is not that of 'a:1'");
  CHECK(supervisor::parse_overrides("backend\ta:1\ta:1,weight=1\tdrain\t1001\n", m) ==
        "line 1: weight '1001' is not 0 to 1000");
  CHECK(supervisor::parse_overrides("garbage\n", m).rfind("line 1: expected", 0) == 0);
  CHECK(m.size() == 1);
  CHECK(m.count("x:1") == 1);
}

TEST_CASE("backend_overrides.an_edited_or_removed_line_drops_its_override") {
  override_map m;
  m["127.0.0.1:9001"] = {"127.0.0.1:9001,weight=1", shm::admin_state::drain, 0};
  m["127.0.0.1:9002"] = {"127.0.0.1:9002,weight=1", shm::admin_state::ready, 5};
  m["127.0.0.1:9003"] = {"127.0.0.1:9003,weight=1", shm::admin_state::maint, 0};
  const auto dropped = supervisor::dropped_overrides(m, two_backends("127.0.0.1:9002,weight=3"));
  CHECK(dropped == std::vector<std::string>{
                       "127.0.0.1:9002 (its line changed: 127.0.0.1:9002,weight=1 -> "
                       "127.0.0.1:9002,weight=3)",
                       "127.0.0.1:9003 (no longer configured)"});
}

TEST_CASE("backend_overrides.apply_writes_rows_and_metrics_show_the_admin_state") {
  auto t = testing::fresh_table();
  const config cfg = two_backends("127.0.0.1:9002");
  t->header.backend_high_water = 2;
  for (const auto& b : cfg.backends) {
    t->backends[b.row].state = shm::backend_state::active;
    shm::copy_fixed(t->backends[b.row].address, shm::address_chars, b.where.to_string());
  }
  supervisor::override_journal journal;  // no file: nothing is written
  CHECK(journal.set("127.0.0.1:9001", {"127.0.0.1:9001,weight=1", shm::admin_state::maint, 0}) ==
        "");
  CHECK(journal.set("127.0.0.1:9002", {"127.0.0.1:9002,weight=1", shm::admin_state::ready, 9}) ==
        "");
  CHECK(journal.apply(*t, cfg).empty());
  CHECK(t->backends[0].admin.load() == shm::admin_state::maint);
  CHECK(t->backends[1].weight.load() == 9);
  const std::string m =
      supervisor::render_metrics(*t, {}, supervisor::metrics_format::prometheus_text, 0);
  CHECK(m.find("wslb_backend_admin_state{backend=\"127.0.0.1:9001\",state=\"maint\"} 1\n") !=
        std::string::npos);
  // A plain `ready` without a weight is no override at all.
  CHECK(journal.set("127.0.0.1:9001", {"127.0.0.1:9001,weight=1", shm::admin_state::ready, 0}) ==
        "");
  CHECK(journal.overrides().size() == 1);
  journal.apply(*t, cfg);
  CHECK(t->backends[0].admin.load() == shm::admin_state::ready);
}
