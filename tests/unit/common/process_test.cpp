#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include "common/process.h"

TEST_CASE("process.running_live_exited_and_zombie") {
  CHECK(wslb::process_running(getpid()));
  CHECK_FALSE(wslb::process_running(0));
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) _exit(0);
  // Not reaped yet: a zombie, which must not count as running.
  for (int i = 0; i < 200 && wslb::process_running(child); ++i) usleep(5000);
  CHECK_FALSE(wslb::process_running(child));
  waitpid(child, nullptr, 0);
  CHECK_FALSE(wslb::process_running(child));
}
