#include "supervisor/respawn_policy.h"

#include <algorithm>

#include "common/exit_codes.h"

namespace wslb::supervisor {

respawn_decision respawn_policy::on_unexpected_exit(int exit_code, std::int64_t lived_ms) {
  if (exit_code == exit_code::fatal_config) return {respawn_action::give_up, 0};
  if (lived_ms >= stable_after_ms) {
    failed_starts_ = 0;
    return {respawn_action::respawn_now, 0};
  }
  // The first quick death is restarted at once (a one-off kill -9 right after a restart is
  // not a loop); from the second in a row the delay doubles up to the cap.
  ++failed_starts_;
  if (failed_starts_ == 1) return {respawn_action::respawn_now, 0};
  const std::uint32_t shift = std::min<std::uint32_t>(failed_starts_ - 2, 16);
  const std::uint64_t delay = static_cast<std::uint64_t>(first_delay_ms) << shift;
  return {respawn_action::respawn_later,
          static_cast<std::uint32_t>(std::min<std::uint64_t>(delay, max_delay_ms))};
}

}  // namespace wslb::supervisor
