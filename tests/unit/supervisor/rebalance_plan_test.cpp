#include <doctest/doctest.h>

#include "supervisor/rebalance_plan.h"

using namespace wslb::supervisor;

namespace {
backend_load load(const char* name, std::uint64_t current, std::uint32_t weight = 1,
                  bool accepting = true) {
  static std::size_t row = 0;
  return backend_load{name, row++, current, weight, accepting};
}
}  // namespace

TEST_CASE("rebalance_plan.a_new_backend_gets_its_share") {
  plan_settings s;
  s.rate_permille = 50;  // 5 %/s
  s.max_rate = 1000;
  const rebalance_plan p = make_plan({load("a", 500), load("b", 500), load("c", 0)}, s);
  REQUIRE(p.backends.size() == 3);
  CHECK(p.total == 1000);
  CHECK(p.backends[0].target == 333);
  CHECK(p.backends[0].surplus == 167);
  CHECK(p.backends[1].surplus == 167);
  CHECK(p.backends[2].target == 333);
  CHECK(p.backends[2].surplus == 0);
  CHECK(p.total_surplus == 334);
  CHECK(p.backends[0].rate_milli == 25'000);  // 5 % of 500 per second
  CHECK(p.expected_ms == 6680);               // 167 at 25/s
  CHECK(p.needed());
}

TEST_CASE("rebalance_plan.weights_and_tolerance") {
  plan_settings s;  // 10 % tolerance
  // Weight 2:1 over 300: targets 200 and 100. 215 is within 10 % of 200: nothing to do.
  rebalance_plan p = make_plan({load("a", 215, 2), load("b", 85, 1)}, s);
  CHECK(p.backends[0].target == 200);
  CHECK_FALSE(p.needed());
  // 221 is above 220: shed down to the target, not to the band's edge.
  p = make_plan({load("a", 221, 2), load("b", 79, 1)}, s);
  CHECK(p.backends[0].surplus == 21);
  // A backend that does not accept (down, evacuating) has no target and sheds nothing here;
  // the others share what the accepting ones hold.
  p = make_plan({load("a", 90), load("b", 10), load("down", 400, 1, false)}, s);
  CHECK(p.total == 100);
  CHECK(p.backends[2].surplus == 0);
  CHECK(p.backends[0].surplus == 40);
}

TEST_CASE("rebalance_plan.paces_fit_under_the_instance_cap") {
  plan_settings s;
  s.rate_permille = 100;  // 10 %/s: 100/s from each of two backends of 1000
  s.max_rate = 40;
  s.workers = 2;
  const rebalance_plan p = make_plan({load("a", 1000), load("b", 1000), load("c", 0)}, s);
  // 80 % of 40, less one per worker and shedding backend (4): 28/s in all.
  CHECK(p.backends[0].rate_milli + p.backends[1].rate_milli == 28'000);
  CHECK(p.backends[0].rate_milli == 14'000);
  CHECK(p.expected_ms == (333 * 1'000'000 + 14'000 - 1) / 14'000);
  // A small backend still sheds at least one per second.
  s.max_rate = 1000;
  s.rate_permille = 1;
  const rebalance_plan q = make_plan({load("a", 30), load("b", 0)}, s);
  CHECK(q.backends[0].rate_milli == 1000);
  CHECK(q.backends[0].expected_ms == 15'000);
}

TEST_CASE("rebalance_plan.describe_prints_every_backend_and_the_time") {
  plan_settings s;
  const std::string text = describe_plan(make_plan({load("10.0.0.5:80", 600), load("10.0.0.6:80", 0)}, s));
  CHECK(text.find("10.0.0.5:80") != std::string::npos);
  CHECK(text.find("300 to move") != std::string::npos);
  CHECK(text.find("CURRENT") != std::string::npos);
  CHECK(describe_plan(make_plan({load("x", 10), load("y", 10)}, s)).find("nothing to do") !=
        std::string::npos);
}
