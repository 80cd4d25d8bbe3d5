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
