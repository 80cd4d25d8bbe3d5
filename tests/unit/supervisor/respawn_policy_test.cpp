#include <doctest/doctest.h>

#include "common/exit_codes.h"
#include "supervisor/respawn_policy.h"

using namespace wslb::supervisor;

TEST_CASE("respawn.crash_after_stable_run_restarts_at_once") {
  respawn_policy p;
  auto d = p.on_unexpected_exit(-1, 60'000);
  CHECK(d.action == respawn_action::respawn_now);
  CHECK(p.failed_starts() == 0);
}

TEST_CASE("respawn.crash_loop_backs_off_exponentially_up_to_the_cap") {
  respawn_policy p;
  CHECK(p.on_unexpected_exit(1, 10).action == respawn_action::respawn_now);
  std::uint32_t last = 0;
  for (int i = 0; i < 12; ++i) {
    auto d = p.on_unexpected_exit(1, 10);
    CHECK(d.action == respawn_action::respawn_later);
    CHECK(d.delay_ms >= last);
    CHECK(d.delay_ms <= respawn_policy::max_delay_ms);
    if (i == 0) CHECK(d.delay_ms == respawn_policy::first_delay_ms);
    if (i == 1) CHECK(d.delay_ms == 2 * respawn_policy::first_delay_ms);
    last = d.delay_ms;
  }
  CHECK(last == respawn_policy::max_delay_ms);
  // A stable run forgets the loop.
  CHECK(p.on_unexpected_exit(-1, respawn_policy::stable_after_ms).action ==
        respawn_action::respawn_now);
  CHECK(p.failed_starts() == 0);
}

TEST_CASE("respawn.fatal_configuration_is_not_respawned") {
  respawn_policy p;
  CHECK(p.on_unexpected_exit(wslb::exit_code::fatal_config, 5).action == respawn_action::give_up);
  CHECK(p.on_unexpected_exit(wslb::exit_code::fatal_config, 50'000).action ==
        respawn_action::give_up);
}
