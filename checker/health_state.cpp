#include "checker/health_state.h"

#include <algorithm>

namespace wslb::checker {

namespace {
// Far below INT32_MAX so that streak arithmetic never overflows, far above any rise/fall an
// operator would set (a count beyond it says nothing more).
constexpr std::int32_t streak_limit = 1'000'000;

std::int32_t threshold(std::uint32_t n) {
  return static_cast<std::int32_t>(std::clamp<std::uint32_t>(n, 1, streak_limit));
}
}  // namespace

const char* health_word(bool healthy) { return healthy ? "up" : "down"; }

health_step next_health(health now, probe_status status, std::string_view error,
                        std::uint32_t rise, std::uint32_t fall) {
  health_step out;
  out.next = now;
  if (status == probe_status::ok) {
    // A good check after failures starts a new run of successes; a streak of 0 (a passive
    // mark-down reset it) starts one too.
    out.next.streak = now.streak > 0 ? std::min(now.streak + 1, streak_limit) : 1;
    if (!now.healthy && out.next.streak >= threshold(rise)) {
      out.next.healthy = true;
      out.changed = transition{false, true,
                               "after " + std::to_string(out.next.streak) +
                                   (out.next.streak == 1 ? " good check" : " good checks")};
    }
    return out;
  }
  out.next.streak = now.streak < 0 ? std::max(now.streak - 1, -streak_limit) : -1;
  if (now.healthy && -out.next.streak >= threshold(fall)) {
    out.next.healthy = false;
    const std::int32_t n = -out.next.streak;
    std::string reason = "after " + std::to_string(n) +
                         (n == 1 ? " failed check" : " failed checks");
    if (!error.empty()) {
      reason += ": ";
      reason += error;
    }
    out.changed = transition{true, false, std::move(reason)};
  }
  return out;
}

}  // namespace wslb::checker
