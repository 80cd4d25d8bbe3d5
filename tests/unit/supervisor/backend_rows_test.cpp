#include <doctest/doctest.h>

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
config with_backends(std::initializer_list<const char*> specs) {
  config c;
  std::string err;
  for (const char* s : specs) {
    backend_config b;
    REQUIRE(parse_backend(s, b, err));
    c.backends.push_back(b);
  }
  return c;
}
}  // namespace

TEST_CASE("backend_rows.keeps_rows_and_counts_across_a_reload") {
  auto t = table_with_two_slots();
  std::string err;
  config first = with_backends({"127.0.0.1:9001", "127.0.0.1:9002"});
  REQUIRE(supervisor::apply_backends(*t, first, err));
  CHECK(first.backends[0].row == 0);
  CHECK(first.backends[1].row == 1);
  CHECK(t->backends[0].healthy == 1);  // rows start up; checks prove them down
  t->workers[0].backends[1].active = 3;

  // Reload: drop 9001, reweight 9002, add 9003.
  config second = with_backends({"127.0.0.1:9002,weight=5", "127.0.0.1:9003"});
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
  config first = with_backends({"127.0.0.1:9001", "127.0.0.1:9002"});
  REQUIRE(supervisor::apply_backends(*t, first, err));
  t->workers[1].backends[0].active = 2;
  config second = with_backends({"127.0.0.1:9002"});
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
    config c = with_backends({numeric});
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
