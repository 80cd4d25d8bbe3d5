#include "common/log.h"

#include <time.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>

namespace wslb {

void log_line(const char* who, const char* format, ...) {
  char line[1024];
  char time[utc_ms_text_max];
  format_utc_ms(unix_ms(), time);
  int n = std::snprintf(line, sizeof line, "%s wslb[%d] %s: ", time, getpid(), who);
  va_list args;
  va_start(args, format);
  if (n > 0 && n < static_cast<int>(sizeof line)) {
    n += std::vsnprintf(line + n, sizeof line - static_cast<std::size_t>(n), format, args);
  }
  va_end(args);
  if (n >= static_cast<int>(sizeof line) - 1) n = sizeof line - 2;
  line[n++] = '\n';
  // A short write to stderr is not worth retrying: logging must never stall a worker.
  [[maybe_unused]] ssize_t w = write(STDERR_FILENO, line, static_cast<std::size_t>(n));
}

int format_utc_ms(std::int64_t unix_ms, char* out) {
  const time_t seconds = static_cast<time_t>(unix_ms / 1000);
  tm utc{};
  gmtime_r(&seconds, &utc);
  return std::snprintf(out, utc_ms_text_max, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                       (utc.tm_year + 1900) % 10000, (utc.tm_mon + 1) % 100, utc.tm_mday % 100,
                       utc.tm_hour % 100, utc.tm_min % 100, utc.tm_sec % 100,
                       static_cast<int>(unix_ms % 1000));
}

std::int64_t unix_ms() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

std::int64_t monotonic_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

}  // namespace wslb
