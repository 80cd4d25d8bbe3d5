// The rise/fall rules of a backend's health, as pure functions: no table, no clock, no I/O.
// The checker applies them to each probe result; the unit tests drive them directly.
//
// State is the pair the table keeps per backend: `healthy` and `streak`, where streak > 0 counts
// good checks in a row and streak < 0 failed checks in a row (0: nothing counted yet, e.g. right
// after a worker marked the backend down passively). A backend goes down after `fall` failed
// checks in a row and comes up after `rise` good checks in a row; a timeout is a failed check.
// With rise >= 2 and fall >= 2, alternating results never change the state.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace wslb::checker {

// How a probe ended. `timed_out` is a failure like any other; it is kept apart only so that the
// reason reads "timeout after N ms".
enum class probe_status { ok, failed, timed_out };

struct health {
  bool healthy = true;
  std::int32_t streak = 0;
};

// An up<->down change and why, for the log line and the transitions counter.
struct transition {
  bool from_healthy = true;
  bool to_healthy = false;
  std::string reason;  // "after 3 failed checks: connect refused", "after 2 good checks"
};

struct health_step {
  health next;
  std::optional<transition> changed;  // set only when `healthy` flips
};

// The health after one probe that ended with `status` (and `error` when it failed), starting
// from `now`. `rise` and `fall` below 1 count as 1. Streaks saturate far from int32 overflow.
health_step next_health(health now, probe_status status, std::string_view error,
                        std::uint32_t rise, std::uint32_t fall);

// "up" / "down", for log lines and status.
const char* health_word(bool healthy);

}  // namespace wslb::checker
