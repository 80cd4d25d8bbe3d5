#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "checker/health_state.h"

using namespace wslb::checker;

namespace {
// Feeds a sequence of results ('+' ok, '-' failed, 't' timed out) and returns the health after
// each, plus the transitions seen.
struct run {
  health h;
  std::vector<transition> flips;
};

run feed(health start, const std::string& results, std::uint32_t rise, std::uint32_t fall) {
  run r{start, {}};
  for (char c : results) {
    const probe_status st = c == '+'   ? probe_status::ok
                            : c == 't' ? probe_status::timed_out
                                       : probe_status::failed;
    const std::string error = c == 't' ? "timeout after 1000 ms" : "connect refused";
    health_step step = next_health(r.h, st, st == probe_status::ok ? "" : error, rise, fall);
    r.h = step.next;
    if (step.changed) r.flips.push_back(*step.changed);
  }
  return r;
}
}  // namespace

TEST_CASE("health_state.down_after_fall_consecutive_failures") {
  run r = feed({true, 0}, "--", 2, 3);
  CHECK(r.h.healthy);
  CHECK(r.h.streak == -2);
  CHECK(r.flips.empty());
  r = feed(r.h, "-", 2, 3);
  CHECK_FALSE(r.h.healthy);
  CHECK(r.h.streak == -3);
  REQUIRE(r.flips.size() == 1);
  CHECK(r.flips[0].from_healthy);
  CHECK_FALSE(r.flips[0].to_healthy);
  CHECK(r.flips[0].reason == "after 3 failed checks: connect refused");
  // Further failures keep counting without another transition.
  r = feed(r.h, "---", 2, 3);
  CHECK_FALSE(r.h.healthy);
  CHECK(r.h.streak == -6);
  CHECK(r.flips.empty());
}

TEST_CASE("health_state.up_after_rise_consecutive_successes") {
  run r = feed({false, -5}, "+", 2, 3);
  CHECK_FALSE(r.h.healthy);
  CHECK(r.h.streak == 1);
  r = feed(r.h, "+", 2, 3);
  CHECK(r.h.healthy);
  CHECK(r.h.streak == 2);
  REQUIRE(r.flips.size() == 1);
  CHECK_FALSE(r.flips[0].from_healthy);
  CHECK(r.flips[0].to_healthy);
  CHECK(r.flips[0].reason == "after 2 good checks");
}

TEST_CASE("health_state.timeout_is_a_failure") {
  run r = feed({true, 4}, "tt", 2, 2);
  CHECK_FALSE(r.h.healthy);
  CHECK(r.h.streak == -2);
  REQUIRE(r.flips.size() == 1);
  CHECK(r.flips[0].reason == "after 2 failed checks: timeout after 1000 ms");
  // Timeouts and other failures count in the same streak.
  r = feed({true, 0}, "t-", 5, 2);
  CHECK_FALSE(r.h.healthy);
}

TEST_CASE("health_state.alternating_results_never_flip") {
  for (std::uint32_t rise : {2u, 3u, 5u}) {
    for (std::uint32_t fall : {2u, 3u, 5u}) {
      for (bool start : {true, false}) {
        run r = feed({start, 0}, "+-+-+-+t+t+-+-+t", rise, fall);
        CHECK(r.h.healthy == start);
        CHECK(r.flips.empty());
        r = feed({start, 0}, "-+-+-+t+-+-+", rise, fall);
        CHECK(r.h.healthy == start);
        CHECK(r.flips.empty());
      }
    }
  }
}

TEST_CASE("health_state.a_success_resets_the_failure_streak") {
  run r = feed({true, 0}, "--+--+--", 2, 3);
  CHECK(r.h.healthy);
  CHECK(r.h.streak == -2);
  r = feed({false, 0}, "+-+-+", 2, 3);
  CHECK_FALSE(r.h.healthy);
  CHECK(r.h.streak == 1);
}

TEST_CASE("health_state.passive_mark_needs_rise_good_checks") {
  // A worker marked the backend down passively and reset the streak to 0, while the checker's
  // last probes had all been good.
  run r = feed({false, 0}, "+", 3, 2);
  CHECK_FALSE(r.h.healthy);
  r = feed(r.h, "+", 3, 2);
  CHECK_FALSE(r.h.healthy);
  r = feed(r.h, "+", 3, 2);
  CHECK(r.h.healthy);
  REQUIRE(r.flips.size() == 1);
  CHECK(r.flips[0].reason == "after 3 good checks");
  // And a failure after the passive mark starts a failure streak without a transition.
  r = feed({false, 0}, "-", 3, 2);
  CHECK_FALSE(r.h.healthy);
  CHECK(r.h.streak == -1);
  CHECK(r.flips.empty());
}

TEST_CASE("health_state.rise_and_fall_of_one_and_of_zero") {
  run r = feed({true, 5}, "-", 1, 1);
  CHECK_FALSE(r.h.healthy);
  CHECK(r.flips.size() == 1);
  CHECK(r.flips[0].reason == "after 1 failed check: connect refused");
  r = feed(r.h, "+", 1, 1);
  CHECK(r.h.healthy);
  CHECK(r.flips[0].reason == "after 1 good check");
  // 0 behaves as 1 rather than "never" or "always".
  r = feed({true, 0}, "-", 0, 0);
  CHECK_FALSE(r.h.healthy);
}

TEST_CASE("health_state.streak_saturates") {
  health h{true, 999'999};
  for (int i = 0; i < 5; ++i) h = next_health(h, probe_status::ok, "", 2, 3).next;
  CHECK(h.streak == 1'000'000);
  h = {false, -999'999};
  for (int i = 0; i < 5; ++i) h = next_health(h, probe_status::failed, "x", 2, 3).next;
  CHECK(h.streak == -1'000'000);
}
