// Exit codes that carry meaning between processes and towards the operator.
#pragma once

namespace wslb::exit_code {

inline constexpr int ok = 0;
inline constexpr int failure = 1;         // runtime failure (and `status`: not running)
inline constexpr int usage = 2;           // bad flag or value: the message names the flag
// A worker or checker that cannot start because of its configuration: the master does not
// respawn it in a loop (nginx uses 2 the same way; ours is distinct from `usage` so the two
// are never confused in the master's log).
inline constexpr int fatal_config = 78;   // EX_CONFIG from sysexits.h
inline constexpr int cannot_start = 3;    // master: cannot bind, cannot create the table, ...

}  // namespace wslb::exit_code
