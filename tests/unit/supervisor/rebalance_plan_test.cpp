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

TEST_CASE("rebalance_plan.in_a_tier_each_node_sheds_its_share_of_the_tier_surplus") {
  plan_settings s;
  s.rate_permille = 50;
  s.max_rate = 1000;
  // Tier-wide 300 on be1 and 100 on be2: targets 200, a surplus of 100 on be1, of which node A
  // holds 200, node B 100 and node C none.
  const auto node = [&](std::uint64_t be1_here, std::uint64_t be2_here) {
    backend_load be1 = load("be1", be1_here);
    be1.others = 300 - be1_here;
    backend_load be2 = load("be2", be2_here);
    be2.others = 100 - be2_here;
    return make_plan({be1, be2}, s);
  };
  const rebalance_plan a = node(200, 0), b = node(100, 0), c = node(0, 100);
  for (const rebalance_plan* p : {&a, &b, &c}) {
    CHECK(p->tier);
    CHECK(p->total == 400);
    CHECK(p->tier_surplus == 100);
    CHECK(p->backends[0].target == 200);
    CHECK(p->backends[0].tier_current == 300);
    CHECK(p->backends[1].surplus == 0);
  }
  CHECK(a.backends[0].surplus == 67);
  CHECK(b.backends[0].surplus == 33);
  CHECK(a.total_surplus + b.total_surplus + c.total_surplus == 100);  // not 100 + 50
  CHECK_FALSE(c.needed());
  // Each node paces its share by its own count, so the shares take about the same time.
  CHECK(a.backends[0].rate_milli == 10'000);
  CHECK(b.backends[0].rate_milli == 5'000);
  CHECK(a.expected_ms == 6700);
  CHECK(b.expected_ms == 6600);
}

TEST_CASE("rebalance_plan.a_tier_balanced_as_a_whole_sheds_nothing") {
  // Node A holds everything on be1, another node everything on be2: each node looks lopsided,
  // the tier is even.
  plan_settings s;
  backend_load be1 = load("be1", 200);
  backend_load be2 = load("be2", 0);
  be2.others = 200;
  const rebalance_plan p = make_plan({be1, be2}, s);
  CHECK(p.tier);
  CHECK(p.backends[0].target == 200);
  CHECK_FALSE(p.needed());
  CHECK(p.tier_surplus == 0);
  CHECK(describe_plan(p).find("nothing to do") != std::string::npos);
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

TEST_CASE("rebalance_plan.describe_in_a_tier_shows_the_tier_and_this_nodes_share") {
  plan_settings s;
  backend_load be1 = load("10.0.0.5:80", 200);
  be1.others = 100;
  backend_load be2 = load("10.0.0.6:80", 0);
  be2.others = 100;
  const std::string text = describe_plan(make_plan({be1, be2}, s));
  CHECK(text.find("TIER") != std::string::npos);
  CHECK(text.find("SHED HERE") != std::string::npos);
  CHECK(text.find("100 to move tier-wide, 67 of them from this node") != std::string::npos);
  backend_load idle = load("10.0.0.5:80", 0);
  idle.others = 300;
  backend_load other = load("10.0.0.6:80", 100);
  CHECK(describe_plan(make_plan({idle, other}, s)).find("nothing held here") != std::string::npos);
}
