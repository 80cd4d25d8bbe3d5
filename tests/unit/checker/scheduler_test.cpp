#include <doctest/doctest.h>

#include <cstring>
#include <memory>

#include "checker/scheduler.h"
#include "shm/table.h"
#include "shm/table_ops.h"

using namespace wslb;
using namespace wslb::checker;

TEST_CASE("scheduler.settings_come_from_the_table_once_written") {
  auto t = std::make_unique<shm::table>();
  std::memset(static_cast<void*>(t.get()), 0, sizeof(shm::table));
  check_config fallback;
  fallback.kind = check_kind::http;
  fallback.interval_ms = 3000;
  fallback.path = "/health";

  check_settings s = read_settings(t->checker, fallback);
  CHECK(s.epoch == 0);
  CHECK(s.kind == check_kind::http);
  CHECK(s.interval_ms == 3000);
  CHECK(s.path == "/health");

  t->checker.kind = static_cast<std::uint32_t>(check_kind::websocket);
  t->checker.interval_ms = 300;
  t->checker.timeout_ms = 200;
  t->checker.rise = 2;
  t->checker.fall = 4;
  shm::copy_fixed(t->checker.path, sizeof t->checker.path, "/ws");
  t->checker.config_epoch = 7;
  s = read_settings(t->checker, fallback);
  CHECK(s.epoch == 7);
  CHECK(s.kind == check_kind::websocket);
  CHECK(s.interval_ms == 300);
  CHECK(s.timeout_ms == 200);
  CHECK(s.rise == 2);
  CHECK(s.fall == 4);
  CHECK(s.path == "/ws");

  SUBCASE("values that would spin the loop are raised") {
    t->checker.interval_ms = 0;
    t->checker.timeout_ms = 0;
    t->checker.rise = 0;
    t->checker.fall = 0;
    t->checker.path[0] = '\0';
    s = read_settings(t->checker, fallback);
    CHECK(s.interval_ms >= 10);
    CHECK(s.timeout_ms >= 1);
    CHECK(s.rise == 1);
    CHECK(s.fall == 1);
    CHECK(s.path == "/");
  }
  SUBCASE("an unknown kind reads as none") {
    t->checker.kind = 42;
    CHECK(read_settings(t->checker, fallback).kind == check_kind::none);
  }
}

TEST_CASE("scheduler.first_probe_keeps_the_rhythm_or_spreads") {
  // Last checked 100 ms ago with a 300 ms interval: next one in 200 ms.
  CHECK(first_delay_ms(10'000, 10'100, 300, 0, 2) == 200);
  // Never checked: spread by row over the interval.
  CHECK(first_delay_ms(0, 10'000, 300, 0, 3) == 0);
  CHECK(first_delay_ms(0, 10'000, 300, 1, 3) == 100);
  CHECK(first_delay_ms(0, 10'000, 300, 2, 3) == 200);
  // Overdue (the checker was away): spread too, rather than all at once.
  CHECK(first_delay_ms(1'000, 10'000, 300, 1, 2) == 150);
  // The wall clock stepped back: treated like never checked.
  CHECK(first_delay_ms(20'000, 10'000, 300, 1, 2) == 150);
  // No rows reported yet (high-water 0) does not divide by zero.
  CHECK(first_delay_ms(0, 10'000, 300, 0, 0) == 0);
}
