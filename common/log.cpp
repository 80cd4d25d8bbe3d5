#include "common/log.h"

#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>

namespace wslb {

void log_line(const char* who, const char* format, ...) {
  char line[1024];
  timeval now{};
  gettimeofday(&now, nullptr);
  tm utc{};
  gmtime_r(&now.tv_sec, &utc);
  int n = std::snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ wslb[%d] %s: ",
                        utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min,
                        utc.tm_sec, static_cast<int>(now.tv_usec / 1000), getpid(), who);
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
