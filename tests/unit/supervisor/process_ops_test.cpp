#include <doctest/doctest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include <optional>
#include <vector>

#include "common/child_channel.h"
#include "common/log.h"
#include "supervisor/process_ops.h"

using namespace wslb;
using namespace wslb::supervisor;

namespace {

// The master's side of the seam, for real: messages arriving on its loop are recorded.
struct recorded_events : child_events {
  std::vector<std::pair<child_id, char>> messages;
  void on_child_message(child_id id, char message) override { messages.emplace_back(id, message); }
};

// Runs `loop` until `done` holds or about 5 s have passed.
template <typename Done>
bool run_until(uv_loop_t* loop, Done done) {
  const std::int64_t deadline = monotonic_ms() + 5'000;
  while (!done() && monotonic_ms() < deadline) {
    uv_run(loop, UV_RUN_NOWAIT);
    usleep(1'000);
  }
  return done();
}

// Reaps child `pid` through the seam, waiting for it to exit.
std::optional<exited_child> reap_pid(process_ops& ops, pid_t pid) {
  const std::int64_t deadline = monotonic_ms() + 5'000;
  while (monotonic_ms() < deadline) {
    if (auto e = ops.reap()) {
      if (e->pid == pid) return e;
    }
    usleep(1'000);
  }
  return std::nullopt;
}

}  // namespace

TEST_CASE("process_ops.forks_a_child_with_a_channel_both_ways_and_reaps_it") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  recorded_events events;
  process_ops ops(&loop, events);
  // The child says it is ready, then exits with the message it gets back (+1).
  const pid_t pid = ops.spawn(child_spec{3, "worker 3", -1, [](int channel) {
    const char ready = child_channel::msg_ready;
    if (send(channel, &ready, 1, MSG_NOSIGNAL) != 1) return 100;
    char got = 0;
    pollfd readable{channel, POLLIN, 0};  // the channel is non-blocking, as children expect
    if (poll(&readable, 1, 5'000) != 1 || recv(channel, &got, 1, 0) != 1) return 101;
    return got == child_channel::msg_drain ? 42 : 102;
  }});
  REQUIRE(pid > 0);
  REQUIRE(run_until(&loop, [&] { return !events.messages.empty(); }));
  CHECK(events.messages[0] == std::make_pair(child_id{3}, child_channel::msg_ready));
  ops.send(3, child_channel::msg_drain);
  const auto exited = reap_pid(ops, pid);
  REQUIRE(exited);
  CHECK(WIFEXITED(exited->status));
  CHECK(WEXITSTATUS(exited->status) == 42);
  CHECK_FALSE(ops.reap());  // nothing else to reap
  ops.close_all_channels();
  uv_run(&loop, UV_RUN_DEFAULT);  // lets the closes finish
  CHECK(uv_loop_close(&loop) == 0);
}

TEST_CASE("process_ops.kill_reaches_the_child") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  recorded_events events;
  process_ops ops(&loop, events);
  const pid_t pid = ops.spawn(child_spec{first_helper_id, "the checker", -1, [](int) {
    for (;;) pause();
    return 0;
  }});
  REQUIRE(pid > 0);
  ops.kill(pid, SIGKILL);
  const auto exited = reap_pid(ops, pid);
  REQUIRE(exited);
  CHECK(WIFSIGNALED(exited->status));
  CHECK(describe_exit(exited->status) == "killed by signal Killed");
  ops.close_all_channels();
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}
