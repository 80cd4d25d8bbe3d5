#include <doctest/doctest.h>

#include "tests/unit/table_image.h"

#include <cstring>
#include <memory>

#include "checker/health_row.h"
#include "shm/table.h"
#include "shm/table_ops.h"

using namespace wslb;
using namespace wslb::checker;

namespace {
using wslb::testing::fresh_table;
// What the master writes when it creates a row: up until checks prove otherwise.
shm::backend_row& new_row(shm::table& t, std::size_t i) {
  shm::backend_row& row = t.backends[i];
  row.healthy = 1;
  row.check_streak = 0;
  row.state = shm::backend_state::active;
  return row;
}

// The passive mark as a worker does it after `fall` real connect failures in a row.
void passive_mark_down(shm::backend_row& row) {
  std::uint32_t up = 1;
  if (row.healthy.compare_exchange_strong(up, 0)) {
    row.check_streak.store(0);
    row.transitions.fetch_add(1);
  }
}
}  // namespace

TEST_CASE("health_row.records_results_and_flips") {
  auto t = fresh_table();
  shm::backend_row& row = new_row(*t, 0);
  CHECK_FALSE(record_check(row, probe_status::ok, "", 2, 2, 1000));
  CHECK(row.check_streak == 1);
  CHECK(row.last_result == shm::check_result::ok);
  CHECK(row.last_check_ms == 1000);
  CHECK(shm::read_last_error(row) == "");

  CHECK_FALSE(record_check(row, probe_status::failed, "connect refused", 2, 2, 2000));
  CHECK(row.healthy == 1);
  CHECK(row.check_streak == -1);
  CHECK(row.last_result == shm::check_result::failed);
  CHECK(shm::read_last_error(row) == "connect refused");

  auto flip = record_check(row, probe_status::timed_out, "timeout after 200 ms", 2, 2, 3000);
  REQUIRE(flip);
  CHECK(flip->reason == "after 2 failed checks: timeout after 200 ms");
  CHECK(row.healthy == 0);
  CHECK(row.check_streak == -2);
  CHECK(row.transitions == 1);
  CHECK(row.last_check_ms == 3000);

  // Recovery keeps the last failure's text for the operator; last_result says it passed.
  CHECK_FALSE(record_check(row, probe_status::ok, "", 2, 2, 4000));
  flip = record_check(row, probe_status::ok, "", 2, 2, 5000);
  REQUIRE(flip);
  CHECK(flip->to_healthy);
  CHECK(row.healthy == 1);
  CHECK(row.transitions == 2);
  CHECK(row.last_result == shm::check_result::ok);
  CHECK(shm::read_last_error(row) == "timeout after 200 ms");
}

TEST_CASE("health_row.passive_mark_is_respected_and_rise_brings_back") {
  auto t = fresh_table();
  shm::backend_row& row = new_row(*t, 3);
  for (int i = 0; i < 4; ++i) record_check(row, probe_status::ok, "", 3, 2, 1000 + i);
  CHECK(row.check_streak == 4);
  row.passive_fail_streak = 2;
  passive_mark_down(row);
  CHECK(row.healthy == 0);

  // Good checks do not undo the mark at once: rise of them are needed, counted from 0.
  CHECK_FALSE(record_check(row, probe_status::ok, "", 3, 2, 2000));
  CHECK(row.healthy == 0);
  CHECK(row.check_streak == 1);
  CHECK_FALSE(record_check(row, probe_status::ok, "", 3, 2, 2100));
  CHECK(row.healthy == 0);
  CHECK(row.passive_fail_streak == 2);
  auto flip = record_check(row, probe_status::ok, "", 3, 2, 2200);
  REQUIRE(flip);
  CHECK_FALSE(flip->from_healthy);
  CHECK(row.healthy == 1);
  CHECK(row.passive_fail_streak == 0);  // a fresh start for the workers' count
  CHECK(row.transitions == 2);          // the passive mark and the recovery
}

TEST_CASE("health_row.failure_after_passive_mark_is_not_a_second_transition") {
  auto t = fresh_table();
  shm::backend_row& row = new_row(*t, 0);
  record_check(row, probe_status::failed, "connect refused", 2, 2, 1000);  // streak -1, still up
  passive_mark_down(row);
  CHECK_FALSE(record_check(row, probe_status::failed, "connect refused", 2, 2, 1100));
  CHECK(row.healthy == 0);
  CHECK(row.check_streak == -1);
  CHECK(row.transitions == 1);
}
