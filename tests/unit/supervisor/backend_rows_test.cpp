#include <doctest/doctest.h>

#include "tests/unit/supervisor/backend_configs.h"
#include "tests/unit/table_image.h"

#include <cstring>
#include <memory>

#include "common/parse.h"
#include "shm/table.h"
#include "shm/table_ops.h"
#include "supervisor/backend_rows.h"

using namespace wslb;

namespace {
std::unique_ptr<shm::table> table_with_two_slots() {
  auto t = testing::fresh_table();
  t->header.slot_high_water = 2;
  return t;
}
// A byte copy of a table, to compare with after a change that must leave no trace.
std::unique_ptr<shm::table> copy_of(const shm::table& t) {
  auto copy = testing::fresh_table();
  std::memcpy(static_cast<void*>(copy.get()), &t, sizeof(shm::table));
  return copy;
}
}  // namespace

TEST_CASE("backend_rows.keeps_rows_and_counts_across_a_reload") {
  auto t = table_with_two_slots();
  std::string err;
  config first = testing::config_with_backends({"127.0.0.1:9001", "127.0.0.1:9002"});
  REQUIRE(supervisor::apply_backends(*t, first, err));
  CHECK(first.backends[0].row == 0);
  CHECK(first.backends[1].row == 1);
  CHECK(t->backends[0].healthy == 1);  // rows start up; checks prove them down
  t->workers[0].backends[1].active = 3;

  // Reload: drop 9001, reweight 9002, add 9003.
  config second = testing::config_with_backends({"127.0.0.1:9002,weight=5", "127.0.0.1:9003"});
  REQUIRE(supervisor::apply_backends(*t, second, err));
  CHECK(second.backends[0].row == 1);  // same row: its live count carries over
  CHECK(shm::sum_active(*t, 1) == 3);
  CHECK(t->backends[1].weight == 5);
  CHECK(t->backends[0].state == shm::backend_state::removed);
  CHECK(second.backends[1].row == 2);  // the removed row is not reused while it may drain
  CHECK(std::string(t->backends[2].address) == "127.0.0.1:9003");
}

TEST_CASE("backend_rows.removed_row_is_freed_only_when_drained") {
  auto t = table_with_two_slots();
  std::string err;
  config first = testing::config_with_backends({"127.0.0.1:9001", "127.0.0.1:9002"});
  REQUIRE(supervisor::apply_backends(*t, first, err));
  t->workers[1].backends[0].active = 2;
  config second = testing::config_with_backends({"127.0.0.1:9002"});
  REQUIRE(supervisor::apply_backends(*t, second, err));
  supervisor::release_drained_backends(*t);
  CHECK(t->backends[0].state == shm::backend_state::removed);
  t->workers[1].backends[0].active = 0;
  supervisor::release_drained_backends(*t);
  CHECK(t->backends[0].state == shm::backend_state::empty);
}

TEST_CASE("backend_rows.a_name_at_a_new_address_keeps_its_row_and_starts_over_healthy") {
  auto t = table_with_two_slots();
  std::string err;
  // "app1:9001" resolved to 127.0.0.1, then (on reload) to 127.0.0.2.
  auto named = [](const char* numeric) {
    config c = testing::config_with_backends({numeric});
    c.backends[0].where.host = "app1";
    return c;
  };
  config first = named("127.0.0.1:9001");
  REQUIRE(supervisor::apply_backends(*t, first, err));
  t->workers[0].backends[0].active = 2;
  t->backends[0].healthy = 0;  // the checker found 127.0.0.1 down
  t->backends[0].check_streak = 3;
  const std::uint32_t epoch = t->backends[0].config_epoch;

  config same = named("127.0.0.1:9001");
  REQUIRE(supervisor::apply_backends(*t, same, err));
  CHECK(t->backends[0].healthy == 0);  // same address: health carries over

  config moved = named("127.0.0.2:9001");
  REQUIRE(supervisor::apply_backends(*t, moved, err));
  CHECK(moved.backends[0].row == 0);  // same name, same row: its live count carries over
  CHECK(shm::sum_active(*t, 0) == 2);
  CHECK(std::string(t->backends[0].address) == "app1:9001");
  CHECK(t->backends[0].healthy == 1);
  CHECK(t->backends[0].check_streak == 0);
  CHECK(t->backends[0].config_epoch > epoch + 1);  // the checker sees the change
  CHECK(t->backends[0].sockaddr_len == sizeof(sockaddr_in));
  CHECK(std::memcmp(t->backends[0].sockaddr_bytes, &moved.backends[0].where.addr,
                    sizeof(sockaddr_in)) == 0);
  CHECK(first.backends[0].where.address_text() == "127.0.0.1");
  CHECK_FALSE(first.backends[0].where.same_address(moved.backends[0].where));
}

TEST_CASE("backend_rows.prepare_stages_new_rows_and_roll_back_leaves_no_trace") {
  auto t = table_with_two_slots();
  std::string err;
  config first = testing::config_with_backends({"127.0.0.1:9001", "127.0.0.1:9002"});
  REQUIRE(supervisor::apply_backends(*t, first, err));
  const auto before = copy_of(*t);

  config next = testing::config_with_backends({"127.0.0.1:9002,weight=7", "127.0.0.1:9003"});
  supervisor::backend_rows_change change;
  REQUIRE(change.prepare(*t, next) == "");
  CHECK(next.backends[0].row == 1);
  CHECK(next.backends[1].row == 2);
  // The serving generation's rows are untouched; the new one waits, staged.
  CHECK(t->backends[0].state == shm::backend_state::active);
  CHECK(t->backends[1].weight == 1);
  CHECK(t->backends[2].state == shm::backend_state::staged);
  CHECK(std::string(t->backends[2].address) == "127.0.0.1:9003");

  change.roll_back(*t);
  CHECK(t->backends[2].state == shm::backend_state::empty);
  CHECK(t->header.backend_high_water == before->header.backend_high_water);
  for (std::size_t b = 0; b < 2; ++b) {
    CHECK(std::memcmp(&t->backends[b], &before->backends[b], sizeof(shm::backend_row)) == 0);
  }
}

TEST_CASE("backend_rows.commit_activates_reweights_and_removes") {
  auto t = table_with_two_slots();
  std::string err;
  config first = testing::config_with_backends({"127.0.0.1:9001", "127.0.0.1:9002"});
  REQUIRE(supervisor::apply_backends(*t, first, err));
  config next = testing::config_with_backends({"127.0.0.1:9002,weight=7", "127.0.0.1:9003"});
  supervisor::backend_rows_change change;
  REQUIRE(change.prepare(*t, next) == "");
  change.commit(*t, next);
  CHECK(t->backends[0].state == shm::backend_state::removed);
  CHECK(t->backends[1].weight == 7);
  CHECK(t->backends[2].state == shm::backend_state::active);
  CHECK(supervisor::backend_changes(first, next) ==
        " ~127.0.0.1:9002 weight 1->7 +127.0.0.1:9003 -127.0.0.1:9001");
}

TEST_CASE("backend_rows.too_many_backends_stage_nothing") {
  auto t = table_with_two_slots();
  std::string err;
  config first = testing::config_with_backends({"127.0.0.1:9001"});
  REQUIRE(supervisor::apply_backends(*t, first, err));
  const auto before = copy_of(*t);
  config next = testing::config_with_backends({"127.0.0.1:9001"});
  for (int port = 20000; port < 20000 + static_cast<int>(shm::max_backends); ++port) {
    backend_config b;
    REQUIRE(parse_backend("127.0.0.1:" + std::to_string(port), b, err));
    next.backends.push_back(b);
  }
  supervisor::backend_rows_change change;
  const std::string why = change.prepare(*t, next);
  CHECK(why.find("no free backend row") == 0);
  CHECK(std::memcmp(t->backends, before->backends, sizeof before->backends) == 0);
  CHECK(t->header.backend_high_water == before->header.backend_high_water);
}

TEST_CASE("backend_rows.a_backend_back_while_its_removed_row_drains_is_staged_on_that_row") {
  auto t = table_with_two_slots();
  std::string err;
  config first = testing::config_with_backends({"127.0.0.1:9001", "127.0.0.1:9002"});
  REQUIRE(supervisor::apply_backends(*t, first, err));
  t->workers[0].backends[0].active = 1;  // 9001 still has a connection when it is removed
  config second = testing::config_with_backends({"127.0.0.1:9002"});
  REQUIRE(supervisor::apply_backends(*t, second, err));
  REQUIRE(t->backends[0].state == shm::backend_state::removed);

  config back = testing::config_with_backends({"127.0.0.1:9001", "127.0.0.1:9002"});
  supervisor::backend_rows_change change;
  REQUIRE(change.prepare(*t, back) == "");
  CHECK(back.backends[0].row == 0);  // its row, with its live count
  CHECK(t->backends[0].state == shm::backend_state::staged);  // the new generation may pick it
  change.roll_back(*t);
  CHECK(t->backends[0].state == shm::backend_state::removed);

  supervisor::backend_rows_change again;
  REQUIRE(again.prepare(*t, back) == "");
  again.commit(*t, back);
  CHECK(t->backends[0].state == shm::backend_state::active);
  CHECK(shm::sum_active(*t, 0) == 1);
}

TEST_CASE("backend_rows.workers_hear_of_every_change_to_the_set_of_rows") {
  auto t = table_with_two_slots();
  std::string err;
  config first = testing::config_with_backends({"127.0.0.1:9001", "127.0.0.1:9002"});
  REQUIRE(supervisor::apply_backends(*t, first, err));
  const std::uint32_t after_start = t->header.backend_epoch.load();
  CHECK(after_start > 0);
  // A runtime removal of 9001: one more epoch; freeing its drained row: one more.
  t->workers[0].backends[0].active = 1;
  config second = testing::config_with_backends({"127.0.0.1:9002"});
  REQUIRE(supervisor::apply_backends(*t, second, err));
  CHECK(t->header.backend_epoch.load() == after_start + 1);
  supervisor::release_drained_backends(*t);
  CHECK(t->header.backend_epoch.load() == after_start + 1);  // still draining: nothing freed
  t->workers[0].backends[0].active = 0;
  supervisor::release_drained_backends(*t);
  CHECK(t->header.backend_epoch.load() == after_start + 2);
  CHECK(t->backends[0].state == shm::backend_state::empty);
}

TEST_CASE("backend_rows.a_backend_back_while_it_is_being_emptied_is_no_longer_emptied") {
  auto t = table_with_two_slots();
  std::string err;
  config both = testing::config_with_backends({"127.0.0.1:9001", "127.0.0.1:9002"});
  REQUIRE(supervisor::apply_backends(*t, both, err));
  // `backend remove 127.0.0.1:9001 --drain 30s`: evacuating, removed, still draining.
  t->workers[0].backends[0].active = 4;
  t->backends[0].evacuate_start_ms = 1000;
  t->backends[0].evacuate_end_ms = 31000;
  config one = testing::config_with_backends({"127.0.0.1:9002"});
  REQUIRE(supervisor::apply_backends(*t, one, err));
  REQUIRE(t->backends[0].state == shm::backend_state::removed);
  config again = testing::config_with_backends({"127.0.0.1:9002", "127.0.0.1:9001"});
  REQUIRE(supervisor::apply_backends(*t, again, err));
  CHECK(again.backends[1].row == 0);
  CHECK(t->backends[0].state == shm::backend_state::active);
  CHECK(t->backends[0].evacuate_end_ms == 0);
  CHECK(t->backends[0].evacuate_start_ms == 0);
  CHECK(shm::sum_active(*t, 0) == 4);
}
