#include <doctest/doctest.h>

#include <algorithm>

#include "shm/cluster_view.h"
#include "shm/table_ops.h"
#include "supervisor/rebalancer.h"
#include "tests/unit/table_image.h"

using namespace wslb;
using namespace wslb::supervisor;

namespace {

void add_backend(shm::table& t, std::uint32_t row, const char* address) {
  shm::backend_row& r = t.backends[row];
  shm::copy_fixed(r.address, shm::address_chars, address);
  r.state = shm::backend_state::active;
  r.healthy = 1;
  r.weight = 1;
  r.admin = shm::admin_state::ready;
  t.header.backend_high_water = std::max(t.header.backend_high_water.load(), row + 1);
}

}  // namespace

TEST_CASE("rebalancer.plans_over_the_tier_and_ends_at_the_tiers_target") {
  auto t = wslb::testing::fresh_table();
  t->header.slot_high_water = 1;
  add_backend(*t, 0, "10.0.0.1:80");
  add_backend(*t, 1, "10.0.0.2:80");
  t->workers[0].backends[0].active = 200;
  t->backends[0].cluster_active = 100;  // another node's
  t->backends[1].cluster_active = 100;
  shaping_config settings;
  settings.rebalance = rebalance_mode::manual;
  rebalancer shaping;
  const rebalance_plan plan = shaping.plan_now(*t, settings);
  CHECK(plan.total == 400);
  CHECK(plan.backends[0].target == 200);
  CHECK(plan.backends[0].surplus == 67);  // this node's two thirds of 100
  shaping.start(*t, plan, 1'000);
  CHECK(t->backends[0].rebalance_target == 200);
  CHECK(t->backends[0].rebalance_surplus == 67);
  REQUIRE(t->backends[0].shed_rate_milli != 0);
  // The other node shed its share: the tier is at the target, though this node has shed only
  // part of its own.
  t->workers[0].backends[0].shed = 40;
  t->workers[0].backends[0].active = 160;
  t->backends[0].cluster_active = 40;
  shaping.tick(*t, settings, 2'000);
  CHECK(t->backends[0].shed_rate_milli == 0);
  CHECK(t->header.rebalance_running == 0);
}

TEST_CASE("rebalancer.auto_in_a_tier_waits_for_the_agents_round_after_a_change") {
  auto t = wslb::testing::fresh_table();
  t->header.slot_high_water = 1;
  add_backend(*t, 0, "10.0.0.1:80");
  t->workers[0].backends[0].active = 100;
  t->backends[0].cluster_active = 200;
  t->cluster.interval_ms = 500;
  shm::set_cluster_link(*t, shm::cluster_link::connected, 1'000);
  t->cluster.last_round_ms = 9'900;
  shaping_config settings;
  settings.rebalance = rebalance_mode::auto_;
  rebalancer shaping;
  shaping.tick(*t, settings, 10'000);
  // A reload adds backend 2, which holds 300 on the other nodes: its row's figure is 0 until
  // the agent publishes again, and a plan made now would see 300/0 instead of 300/300.
  add_backend(*t, 1, "10.0.0.2:80");
  shaping.tick(*t, settings, 10'100);
  CHECK(t->header.rebalance_running == 0);
  shaping.tick(*t, settings, 10'200);
  CHECK(t->header.rebalance_running == 0);
  t->backends[1].cluster_active = 300;
  t->cluster.last_round_ms = 10'300;
  shaping.tick(*t, settings, 10'400);
  CHECK(t->header.rebalance_running == 0);  // 300/300: nothing to do
  // Without a round the plan goes ahead after three intervals, on what the table holds.
  t->backends[1].cluster_active = 0;
  t->backends[1].state = shm::backend_state::empty;
  shaping.tick(*t, settings, 20'000);
  t->backends[1].state = shm::backend_state::active;
  shaping.tick(*t, settings, 20'100);
  CHECK(t->header.rebalance_running == 0);
  shaping.tick(*t, settings, 21'400);
  CHECK(t->header.rebalance_running == 0);
  shaping.tick(*t, settings, 21'700);
  CHECK(t->header.rebalance_running == 1);
  CHECK(t->backends[0].rebalance_surplus == 50);  // 150 over the target, a third of it here
}

TEST_CASE("rebalancer.a_backend_with_nothing_left_to_shed_ends_its_part") {
  // Hash modes: the plan's surplus counts connections, but only those whose key now maps
  // elsewhere may go. Once they are gone the workers find no victim: that part of the plan
  // ends after five closes' worth of its pace without one, not at the plan's deadline, but
  // never before the plan is as old as the minimum age (young connections come of age).
  auto t = wslb::testing::fresh_table();
  t->header.slot_high_water = 1;
  add_backend(*t, 0, "10.0.0.1:80");
  add_backend(*t, 1, "10.0.0.2:80");
  t->workers[0].backends[0].active = 150;
  t->workers[0].backends[1].active = 50;
  shaping_config settings;
  settings.rebalance = rebalance_mode::manual;
  settings.min_age_ms = 8'000;
  rebalancer shaping;
  const rebalance_plan plan = shaping.plan_now(*t, settings);
  REQUIRE(plan.backends[0].surplus == 50);
  const std::int64_t stall = stall_ms_for(plan.backends[0].rate_milli);
  CHECK(stall == 5'000);  // 3 closes/s: five of them take less than the 5 s floor

  // No close at all: past the stall but within the minimum age, it waits; then it ends.
  shaping.start(*t, plan, 0);
  shaping.tick(*t, settings, 7'900);
  CHECK(t->header.rebalance_running == 1);
  shaping.tick(*t, settings, 8'000);
  CHECK(t->header.rebalance_running == 0);

  // Closes keep coming: it runs on past both; once they stop, it ends a stall later.
  shaping.start(*t, plan, 100'000);
  std::int64_t now = 100'000;
  for (int i = 0; i < 20; ++i) {
    now += 1'000;
    t->workers[0].backends[0].shed.fetch_add(1);
    t->workers[0].backends[0].active.fetch_sub(1);
    shaping.tick(*t, settings, now);
    REQUIRE(t->header.rebalance_running == 1);
  }
  shaping.tick(*t, settings, now + stall - 100);
  CHECK(t->header.rebalance_running == 1);
  shaping.tick(*t, settings, now + stall);
  CHECK(t->backends[0].shed_rate_milli == 0);
  CHECK(t->header.rebalance_running == 0);
  CHECK(stall_ms_for(100) == 50'000);  // one close every 10 s: five of them
}

TEST_CASE("rebalancer.auto_waits_for_a_handover_to_settle") {
  // A reload with handover adds C and moves the tunnels at once: those sent and not yet taken
  // in count nowhere. Auto plans only once that count has stood still for a second.
  auto t = wslb::testing::fresh_table();
  t->header.slot_high_water = 2;
  add_backend(*t, 0, "10.0.0.1:80");
  add_backend(*t, 1, "10.0.0.2:80");
  t->workers[0].backends[0].active = 100;
  t->workers[0].backends[1].active = 100;
  shaping_config settings;
  settings.rebalance = rebalance_mode::auto_;
  settings.min_age_ms = 1'000;
  rebalancer shaping;
  shaping.tick(*t, settings, 10'000);  // what is there at start is not a change
  add_backend(*t, 2, "10.0.0.3:80");
  // Worker 0 has sent 60 of its tunnels to worker 1, which has taken in 20 so far.
  t->workers[0].handed_over = 60;
  t->workers[0].backends[0].active = 70;
  t->workers[0].backends[1].active = 70;
  t->workers[1].handed_in = 20;
  t->workers[1].backends[0].active = 10;
  t->workers[1].backends[1].active = 10;
  shaping.tick(*t, settings, 10'100);
  shaping.tick(*t, settings, 10'800);
  t->workers[1].handed_in = 60;
  t->workers[1].backends[0].active = 30;
  t->workers[1].backends[1].active = 30;
  shaping.tick(*t, settings, 11'200);
  shaping.tick(*t, settings, 12'100);
  CHECK(t->header.rebalance_plans == 0);
  shaping.tick(*t, settings, 12'200);
  CHECK(t->header.rebalance_plans == 1);
  CHECK(t->backends[0].rebalance_target == 67);  // 200 / 3: every tunnel counted again
  CHECK(t->backends[0].rebalance_surplus == 33);
}

TEST_CASE("rebalancer.tunnels_still_only_a_second_after_the_handover_count_last_moved") {
  // What a manual `rebalance` waits for: the tunnels sent minus taken in has not moved for
  // handover_settle_ms (a tunnel in flight counts on neither side).
  auto t = wslb::testing::fresh_table();
  t->header.slot_high_water = 2;
  rebalancer shaping;
  CHECK(shaping.tunnels_still(*t, 10'000));  // nothing was ever handed over
  t->workers[0].handed_over = 40;            // a reload's handover begins
  t->workers[1].handed_in = 10;
  CHECK_FALSE(shaping.tunnels_still(*t, 10'050));
  t->workers[1].handed_in = 40;              // every tunnel taken in
  CHECK_FALSE(shaping.tunnels_still(*t, 10'100));
  CHECK_FALSE(shaping.tunnels_still(*t, 11'099));
  CHECK(shaping.tunnels_still(*t, 11'100));
  // A receiver that died with 5 tunnels: the count stands at 5, and stands still.
  t->workers[0].handed_over = 45;
  CHECK_FALSE(shaping.tunnels_still(*t, 12'000));
  CHECK(shaping.tunnels_still(*t, 13'000));
}
