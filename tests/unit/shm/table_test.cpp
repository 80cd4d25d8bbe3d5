#include <doctest/doctest.h>

#include "tests/unit/table_image.h"

#include <cstring>
#include <memory>
#include <unistd.h>

#include "shm/table.h"
#include "shm/cluster_view.h"
#include "shm/table_ops.h"

using namespace wslb::shm;

namespace {
using wslb::testing::fresh_table;
}  // namespace

TEST_CASE("table.header_of_this_build_is_accepted") {
  auto t = fresh_table();
  CHECK(table_mapping::check_header(t.get(), sizeof(table)) == "");
}

TEST_CASE("table.rejects_foreign_or_mismatched_layouts") {
  auto t = fresh_table();
  SUBCASE("bad magic") {
    t->header.magic = 42;
    CHECK(table_mapping::check_header(t.get(), sizeof(table)).find("bad magic") == 0);
  }
  SUBCASE("other layout version") {
    t->header.version = layout_version + 1;
    CHECK(table_mapping::check_header(t.get(), sizeof(table)).find("layout version") == 0);
  }
  SUBCASE("other size") {
    t->header.size = sizeof(table) - 64;
    CHECK(table_mapping::check_header(t.get(), sizeof(table)).find("table size") == 0);
  }
  SUBCASE("truncated segment") {
    CHECK(table_mapping::check_header(t.get(), 16).find("smaller than a table header") !=
          std::string::npos);
  }
}

TEST_CASE("table.sums_active_across_worker_rows") {
  auto t = fresh_table();
  t->header.slot_high_water = 3;
  t->workers[0].backends[1].active = 5;
  t->workers[1].backends[1].active = 7;
  t->workers[2].backends[1].active = 1;
  t->workers[3].backends[1].active = 100;  // beyond the high-water mark: not in use
  CHECK(sum_active(*t, 1) == 13);
  CHECK(sum_active(*t, 0) == 0);
}

TEST_CASE("table.clears_row_of_dead_worker") {
  auto t = fresh_table();
  t->header.slot_high_water = 2;
  auto& dead = t->workers[1].backends[0];
  dead.active = 4;
  dead.total = 10;
  dead.bytes_in = 1000;
  dead.bytes_out = 2000;
  dead.failures = 3;
  t->workers[1].connections = 4;
  t->workers[1].tls_parked = 3;
  t->workers[1].tls_handshakes = 9;
  t->workers[0].backends[0].active = 2;
  t->workers[0].backends[0].total = 5;

  const auto before = sum_backend(*t, 0);
  CHECK(before.active == 6);
  clear_worker_row(*t, 1);
  const auto after = sum_backend(*t, 0);
  CHECK(after.active == 2);           // the dead worker's live connections are gone
  CHECK(after.total == before.total);  // but totals are kept
  CHECK(after.bytes_in == 1000);
  CHECK(after.bytes_out == 2000);
  CHECK(after.failures == 3);
  CHECK(t->workers[1].connections == 0);
  CHECK(sum_tls(*t).parked == 0);       // parked connections die with their worker
  CHECK(sum_tls(*t).handshakes == 9);  // handshakes count per instance
}

TEST_CASE("table.last_error_round_trips_and_truncates") {
  auto t = fresh_table();
  write_last_error(t->backends[0], "connect refused");
  CHECK(read_last_error(t->backends[0]) == "connect refused");
  write_last_error(t->backends[0], std::string(500, 'x'));
  CHECK(read_last_error(t->backends[0]).size() == error_chars - 1);
}

TEST_CASE("table.create_attach_remove_through_dev_shm") {
  const std::string name = new_segment_name("unittest-" + std::to_string(getpid()));
  {
    auto created = table_mapping::create(name);
    created->header.master_pid = 1234;
    auto reader = table_mapping::attach(name, access::read_only);
    CHECK(reader->header.master_pid == 1234);
  }
  CHECK(table_mapping::remove(name));
  CHECK_THROWS_WITH_AS(table_mapping::attach(name, access::read_only),
                       doctest::Contains(("no table /dev/shm/" + name).c_str()), table_missing);
}

TEST_CASE("table.trusts_only_a_private_segment_of_this_user_and_one_table_long") {
  const std::uint32_t me = geteuid();
  CHECK(check_segment_owner(me, 0100600, sizeof(table)) == "");
  CHECK(check_segment_owner(me + 1, 0100600, sizeof(table)) ==
        "owned by uid " + std::to_string(me + 1) + ", not by this user (uid " +
            std::to_string(me) + ")");
  CHECK(check_segment_owner(me, 0100640, sizeof(table)) ==
        "open to group or others (mode 0640, expected 0600)");
  CHECK(check_segment_owner(me, 0100604, sizeof(table)).find("mode 0604") != std::string::npos);
  CHECK(check_segment_owner(me, 0100600, 4096).find("of 4096 bytes") == 0);
  // Table names cannot be guessed, so no other user can plant one first.
  const std::string a = new_segment_name("app");
  const std::string b = new_segment_name("app");
  CHECK(a.rfind("wslb." + std::to_string(me) + ".app.", 0) == 0);
  CHECK(a.size() == std::string("wslb." + std::to_string(me) + ".app.").size() + 16);
  CHECK(a != b);
}

TEST_CASE("table.inherited_connections_count_for_least_conn_until_each_arrives_once") {
  auto t = fresh_table();
  t->header.slot_high_water = 1;
  t->workers[0].backends[0].active = 3;
  // After an upgrade to another layout: 5 of the predecessor's connections not yet here.
  t->backends[0].inherited_active = 5;
  CHECK(tier_active(*t, 0) == 8);
  // One arrives: counted in the worker's row, no longer as inherited.
  t->workers[0].backends[0].active = 4;
  inherited_take_one(*t, 0);
  CHECK(t->backends[0].inherited_active == 4);
  CHECK(tier_active(*t, 0) == 8);
  // Never below zero (the master zeroed it once the predecessor was gone).
  t->backends[0].inherited_active = 0;
  inherited_take_one(*t, 0);
  CHECK(t->backends[0].inherited_active == 0);
  CHECK(tier_active(*t, 0) == 4);
}
