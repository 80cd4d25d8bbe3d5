// run_checker in a forked child over a table in anonymous shared memory, as the master would
// run it: settings and backend rows written by the "master" (this test), results read back.
#include <doctest/doctest.h>

#include "tests/unit/forked_child.h"
#include "tests/unit/loopback_listener.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <string>
#include <thread>

#include "checker/checker_main.h"
#include "common/exit_codes.h"
#include "shm/table.h"
#include "shm/table_ops.h"

using namespace wslb;

namespace {

using testing::shared_table;
using listening_socket = wslb::testing::loopback_listener;  // accepts nothing

// As the master writes a new row: address and sockaddr first, healthy, then active, epoch.
void write_backend_row(shm::table& t, std::size_t i, int port) {
  shm::backend_row& row = t.backends[i];
  row.state.store(shm::backend_state::empty);
  const std::string address = "127.0.0.1:" + std::to_string(port);
  shm::copy_fixed(row.address, shm::address_chars, address);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::memcpy(row.sockaddr_bytes, &a, sizeof a);
  row.sockaddr_len = sizeof a;
  row.healthy = 1;
  row.check_streak = 0;
  row.last_check_ms = 0;
  row.passive_fail_streak = 0;
  row.weight = 1;
  row.state.store(shm::backend_state::active, std::memory_order_release);
  row.config_epoch.fetch_add(1);
  if (t.header.backend_high_water.load() < i + 1) {
    t.header.backend_high_water = static_cast<std::uint32_t>(i + 1);
  }
}

void write_settings(shm::table& t, check_kind kind, std::uint32_t interval, std::uint32_t timeout) {
  t.checker.kind = static_cast<std::uint32_t>(kind);
  t.checker.interval_ms = interval;
  t.checker.timeout_ms = timeout;
  t.checker.rise = 2;
  t.checker.fall = 2;
  shm::copy_fixed(t.checker.path, sizeof t.checker.path, "/");
  t.checker.config_epoch.fetch_add(1, std::memory_order_release);
}

bool wait_for(const std::function<bool()>& cond, int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return cond();
}

// The checker as the master forks it.
struct checker_child : testing::forked_child {
  checker_child(shm::table& t, const config& cfg)
      : forked_child([&](int master_fd) { return checker::run_checker(cfg, t, master_fd); }) {}
};

}  // namespace

TEST_CASE("checker.probes_rows_from_the_table_and_exits_when_the_master_goes") {
  shared_table st;
  shm::table& t = *st.t;
  listening_socket up;
  int refused_port = 0;
  { listening_socket tmp; refused_port = tmp.port; }
  write_settings(t, check_kind::tcp, 50, 100);
  write_backend_row(t, 0, up.port);
  write_backend_row(t, 1, refused_port);
  config cfg;  // the start-up copy; the table's settings win
  cfg.check.interval_ms = 60'000;

  checker_child child(t, cfg);
  const auto started = std::chrono::steady_clock::now();
  REQUIRE(wait_for([&] { return t.backends[1].healthy.load() == 0; }, 3000));
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - started).count();
  MESSAGE("refused backend down after " << took << " ms (fall 2, interval 50 ms)");
  CHECK(took < 1000);
  CHECK(t.backends[1].check_streak.load() <= -2);
  CHECK(t.backends[1].last_result.load() == shm::check_result::failed);
  CHECK(shm::read_last_error(t.backends[1]) == "connect refused");
  CHECK(t.backends[1].transitions.load() == 1);
  REQUIRE(wait_for([&] { return t.backends[0].check_streak.load() >= 2; }, 2000));
  CHECK(t.backends[0].healthy.load() == 1);
  CHECK(t.backends[0].last_result.load() == shm::check_result::ok);
  CHECK(t.backends[0].last_check_ms.load() > 0);

  SUBCASE("a passive mark-down is brought back after rise good checks") {
    std::uint32_t one = 1;
    REQUIRE(t.backends[0].healthy.compare_exchange_strong(one, 0));
    t.backends[0].check_streak = 0;
    t.backends[0].passive_fail_streak = 2;
    t.backends[0].transitions.fetch_add(1);
    REQUIRE(wait_for([&] { return t.backends[0].healthy.load() == 1; }, 2000));
    CHECK(t.backends[0].check_streak.load() >= 2);
    CHECK(t.backends[0].passive_fail_streak.load() == 0);
    CHECK(t.backends[0].transitions.load() == 2);
  }
  SUBCASE("a row re-pointed by a reload is checked at its new address") {
    t.backends[1].state.store(shm::backend_state::removed);
    t.backends[1].config_epoch.fetch_add(1);
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    const std::int64_t last = t.backends[1].last_check_ms.load();
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    CHECK(t.backends[1].last_check_ms.load() == last);  // removed rows are not probed
    write_backend_row(t, 1, up.port);
    REQUIRE(wait_for([&] { return t.backends[1].check_streak.load() >= 2; }, 2000));
    CHECK(t.backends[1].healthy.load() == 1);
  }
  SUBCASE("new settings from the table apply without a restart") {
    write_settings(t, check_kind::http, 50, 80);  // the listening socket never answers
    REQUIRE(wait_for([&] { return t.backends[0].healthy.load() == 0; }, 3000));
    CHECK(shm::read_last_error(t.backends[0]).rfind("timeout after 80 ms", 0) == 0);
  }

  child.hang_up();
  CHECK(child.wait_exit(std::chrono::milliseconds(2000)) == exit_code::ok);
}

TEST_CASE("checker.exits_on_sigterm_and_resumes_from_the_table") {
  shared_table st;
  shm::table& t = *st.t;
  int refused_port = 0;
  { listening_socket tmp; refused_port = tmp.port; }
  write_settings(t, check_kind::tcp, 50, 100);
  write_backend_row(t, 0, refused_port);
  config cfg;
  {
    checker_child child(t, cfg);
    REQUIRE(wait_for([&] { return t.backends[0].healthy.load() == 0; }, 3000));
    kill(child.pid, SIGTERM);
    CHECK(child.wait_exit(std::chrono::milliseconds(2000)) == exit_code::ok);
  }
  const std::uint64_t transitions = t.backends[0].transitions.load();
  CHECK(transitions == 1);
  // A restarted checker continues from the table: still down, no second "up -> down".
  checker_child again(t, cfg);
  const std::int32_t streak = t.backends[0].check_streak.load();
  REQUIRE(wait_for([&] { return t.backends[0].check_streak.load() < streak; }, 2000));
  CHECK(t.backends[0].healthy.load() == 0);
  CHECK(t.backends[0].transitions.load() == transitions);
  again.hang_up();
  CHECK(again.wait_exit(std::chrono::milliseconds(2000)) == exit_code::ok);
}
