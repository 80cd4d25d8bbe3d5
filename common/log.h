// One log line per event on stderr, in one write(2) so lines from several processes never
// interleave: "2026-11-25T10:00:00.123Z wslb[1234] worker 2: connect 127.0.0.1:9001 failed: ...".
#pragma once

#include <cstdint>

namespace wslb {

// `who` names the process role ("master", "worker 2", "checker"). printf-style format.
void log_line(const char* who, const char* format, ...) __attribute__((format(printf, 2, 3)));

// Longest text format_utc_ms writes, with its NUL: "2026-11-25T10:00:00.123Z".
inline constexpr int utc_ms_text_max = 25;
// Writes `unix_ms` as RFC 3339 UTC with milliseconds into `out` (utc_ms_text_max bytes);
// returns the length (24). The time format of log lines and of the access log.
int format_utc_ms(std::int64_t unix_ms, char* out);

// Wall-clock milliseconds since the Unix epoch (for the table: other processes read it).
std::int64_t unix_ms();
// Monotonic milliseconds (for timeouts within one process).
std::int64_t monotonic_ms();

}  // namespace wslb
