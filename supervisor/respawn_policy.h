// What the master does when a child it did not ask to exit has died. Pure: the master feeds
// it the exit status and how long the child lived; unit tests drive it directly.
#pragma once

#include <cstdint>

namespace wslb::supervisor {

enum class respawn_action {
  respawn_now,   // a crash after a stable run: restart at once in the same slot
  respawn_later, // a failed start (died right after start): wait `delay_ms`, then restart
  give_up,       // exited with exit_code::fatal_config: restarting cannot help
};

struct respawn_decision {
  respawn_action action = respawn_action::respawn_now;
  std::uint32_t delay_ms = 0;
};

// Per-slot memory of recent failed starts.
class respawn_policy {
 public:
  // A child that lived less than this died "right after start".
  static constexpr std::int64_t stable_after_ms = 2'000;
  static constexpr std::uint32_t first_delay_ms = 100;
  static constexpr std::uint32_t max_delay_ms = 10'000;

  // `exit_code` is the child's exit code, or -1 when it was killed by a signal.
  respawn_decision on_unexpected_exit(int exit_code, std::int64_t lived_ms);
  // Consecutive failed starts so far (0 after a stable run).
  std::uint32_t failed_starts() const { return failed_starts_; }

 private:
  std::uint32_t failed_starts_ = 0;
};

}  // namespace wslb::supervisor
