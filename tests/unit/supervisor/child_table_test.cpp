#include <doctest/doctest.h>

#include "tests/unit/supervisor/backend_configs.h"
#include "tests/unit/table_image.h"

#include <signal.h>
#include <unistd.h>

#include <deque>
#include <fstream>
#include <sstream>
#include <memory>
#include <string>
#include <vector>

#include "cli/status_view.h"
#include "common/child_channel.h"
#include "common/parse.h"
#include "shm/cluster_view.h"
#include "shm/table_ops.h"
#include "supervisor/child_table.h"
#include "supervisor/rebalancer.h"
#include "supervisor/reload_steps.h"

using namespace wslb;
using namespace wslb::supervisor;

namespace {

// The seam, recording: no process is ever forked. Exits are queued by the test and handed out
// by reap() like waitpid would.
struct fake_ops : child_ops {
  struct spawned {
    child_id id;
    pid_t pid;
  };
  std::vector<spawned> spawns;
  std::vector<std::pair<child_id, char>> sent;
  std::vector<std::pair<pid_t, int>> kills;
  std::deque<exited_child> exits;
  pid_t next_pid = 1000;
  bool fork_fails = false;

  pid_t spawn(const child_spec& spec) override {
    if (fork_fails) return -1;
    spawns.push_back({spec.id, ++next_pid});
    return next_pid;
  }
  void send(child_id id, char message) override { sent.emplace_back(id, message); }
  void kill(pid_t pid, int signum) override { kills.emplace_back(pid, signum); }
  std::optional<exited_child> reap() override {
    if (exits.empty()) return std::nullopt;
    exited_child e = exits.front();
    exits.pop_front();
    return e;
  }
  void close_channel(child_id) override {}

  pid_t pid_of(child_id id) const {
    for (auto it = spawns.rbegin(); it != spawns.rend(); ++it) {
      if (it->id == id) return it->pid;
    }
    return 0;
  }
  bool was_sent(child_id id, char message) const {
    for (const auto& [to, m] : sent) {
      if (to == id && m == message) return true;
    }
    return false;
  }
  bool was_killed(pid_t pid) const {
    for (const auto& [p, sig] : kills) {
      if (p == pid && sig == SIGKILL) return true;
    }
    return false;
  }
  void exit_code(pid_t pid, int code) { exits.push_back({pid, (code & 0xff) << 8}); }
  void killed_by(pid_t pid, int sig) { exits.push_back({pid, sig}); }
};

// Which configuration and generation each worker body was made with.
struct body_made {
  const config* cfg;
  std::size_t row;
  std::uint32_t number;
};

std::shared_ptr<const config> config_with(std::initializer_list<const char*> backends,
                                          unsigned workers) {
  auto c = std::make_shared<config>(testing::config_with_backends(backends));
  c->workers = workers;
  c->drain_timeout_ms = 30'000;
  c->handover = false;  // these tests follow the drain; the handover's messages have their own
  return c;
}

// A master's child table on a fake seam and a table in plain memory, with generation 1
// (two workers, backends 9001 and 9002) serving and ready.
struct master_fixture {
  std::unique_ptr<shm::table> table = testing::fresh_table();
  fake_ops ops;
  std::vector<body_made> bodies;
  clock_reading now{1'000'000, 1'700'000'000'000};
  std::optional<child_table> children;
  std::shared_ptr<const config> first;
  std::vector<std::pair<bool, std::string>> replies;
  std::vector<std::string> events;
  override_journal journal;  // no file unless a test opens one

  master_fixture() {
    generation_context ctx{ops, *table, 7, [this](const std::shared_ptr<const config>& cfg,
                                                  std::size_t row, std::uint32_t number) {
      bodies.push_back({cfg.get(), row, number});
      return std::function<int(int)>([](int) { return 0; });
    }};
    children.emplace(std::move(ctx));
    children->set_observer([this](transaction_event e, std::uint32_t n, const std::string&) {
      events.push_back(std::string(to_string(e)) + " " + std::to_string(n));
    });
    auto cfg = std::make_shared<config>(*config_with({"127.0.0.1:9001", "127.0.0.1:9002"}, 2));
    std::string err;
    REQUIRE(apply_backends(*table, *cfg, err));
    first = cfg;
    children->start_first(first, now);
    ready(0);
    ready(1);
  }

  void ready(child_id row) { children->on_child_message(row, child_channel::msg_ready, now); }
  void later(std::int64_t ms) {
    now.monotonic_ms += ms;
    now.unix_ms += ms;
  }
  child_table::reply reply_to() {
    return [this](bool ok, const std::string& m) { replies.emplace_back(ok, m); };
  }
  // A reload to `next` as the master does it: its steps prepared, then the restart begun.
  void reload(std::shared_ptr<config> next) {
    reload_transaction tx = reload_steps(*table, journal);
    REQUIRE(tx.prepare(*next) == "");
    children->begin_restart(next, std::move(tx), "reloaded", reply_to(), now);
  }
  std::string status() const { return cli::render_status_json(*table, now.unix_ms); }
  shm::worker_state state_of(std::size_t row) const { return table->workers[row].state.load(); }
};

}  // namespace

TEST_CASE("child_table.restart_commits_only_when_every_new_worker_is_ready") {
  master_fixture m;
  m.children->begin_restart(m.first, reload_transaction{}, "", m.reply_to(), m.now);
  CHECK(m.state_of(2) == shm::worker_state::starting);
  CHECK(m.state_of(3) == shm::worker_state::starting);
  m.ready(2);
  CHECK(m.replies.empty());
  CHECK(m.table->header.current_generation == 1);
  CHECK_FALSE(m.ops.was_sent(0, child_channel::msg_drain));
  m.ready(3);
  REQUIRE(m.replies.size() == 1);
  CHECK(m.replies[0].first);
  CHECK(m.replies[0].second.find("generation 2 running 2 workers; generation 1 draining 2") == 0);
  CHECK(m.table->header.current_generation == 2);
  CHECK(m.ops.was_sent(0, child_channel::msg_drain));
  CHECK(m.ops.was_sent(1, child_channel::msg_drain));
  CHECK(m.state_of(0) == shm::worker_state::draining);
  CHECK(m.table->workers[0].drain_deadline_ms == m.now.unix_ms + 30'000);
  CHECK(m.events == std::vector<std::string>{"committed 2"});
}

TEST_CASE("child_table.a_reload_that_fails_at_each_step_leaves_everything_as_it_was") {
  master_fixture m;
  const std::string before = m.status();
  auto next = std::make_shared<config>(*config_with({"127.0.0.1:9002", "127.0.0.1:9003"}, 2));
  const pid_t old0 = m.ops.pid_of(0);

  SUBCASE("a new worker exits at start") {
    m.reload(next);
    CHECK(m.table->backends[2].state == shm::backend_state::staged);
    m.ready(2);
    m.ops.killed_by(m.ops.pid_of(3), SIGSEGV);
    m.children->reap_children(m.now);
    REQUIRE(m.replies.size() == 1);
    CHECK_FALSE(m.replies[0].first);
    CHECK(m.replies[0].second.find("generation 2 cannot start: worker 3") == 0);
    CHECK(m.replies[0].second.find("exited at start (killed by signal") != std::string::npos);
    CHECK(m.replies[0].second.find("; generation 1 keeps serving") != std::string::npos);
    // The ready one is told to stop (its connections close cleanly).
    CHECK(m.ops.was_sent(2, child_channel::msg_stop));
  }
  SUBCASE("a new worker exits with the fatal-configuration code") {
    m.reload(next);
    m.ops.exit_code(m.ops.pid_of(2), 78);
    m.children->reap_children(m.now);
    REQUIRE(m.replies.size() == 1);
    CHECK(m.replies[0].second.find("exit code 78 (fatal configuration)") != std::string::npos);
    CHECK(m.ops.was_killed(m.ops.pid_of(3)));  // never ready: killed outright
  }
  SUBCASE("the new workers are not ready in time") {
    m.reload(next);
    m.ready(2);
    m.later(ready_timeout_ms - 1);
    m.children->tick(m.now);
    CHECK(m.replies.empty());
    m.later(2);
    m.children->tick(m.now);
    REQUIRE(m.replies.size() == 1);
    CHECK(m.replies[0].second == "generation 2 did not start within 10 s; generation 1 keeps serving");
    CHECK(m.ops.was_sent(2, child_channel::msg_stop));
    CHECK(m.ops.was_killed(m.ops.pid_of(3)));
    m.later(-ready_timeout_ms - 1);  // the status below is rendered at the same clock
  }
  SUBCASE("a new worker cannot be forked") {
    m.ops.fork_fails = true;
    m.reload(next);
    REQUIRE(m.replies.size() == 1);
    CHECK(m.replies[0].second.find("a worker could not be forked") != std::string::npos);
    m.ops.fork_fails = false;
  }
  SUBCASE("no free worker slot") {
    auto wide = std::make_shared<config>(*config_with({"127.0.0.1:9002", "127.0.0.1:9003"},
                                                      static_cast<unsigned>(shm::max_worker_slots - 1)));
    m.reload(wide);
    REQUIRE(m.replies.size() == 1);
    CHECK(m.replies[0].second == "no free worker slot: too many generations still draining");
  }
  // Whatever failed: the old generation serves, undrained, with its own rows and backends, and
  // status reads as it did before.
  CHECK(m.events.back() == "rolled back 2");
  CHECK(m.table->header.current_generation == 1);
  CHECK_FALSE(m.ops.was_sent(0, child_channel::msg_drain));
  CHECK(m.ops.pid_of(0) == old0);
  CHECK(m.table->backends[0].state == shm::backend_state::active);
  CHECK(m.table->backends[2].state == shm::backend_state::empty);
  CHECK(m.status() == before);
  CHECK_FALSE(m.children->restart_pending());
}

TEST_CASE("child_table.a_failed_reload_leaves_overrides_a_rebalance_and_cluster_figures_alone") {
  master_fixture m;
  shm::table& t = *m.table;
  const std::string state_file =
      "/tmp/wslb-child-table-test-" + std::to_string(getpid()) + ".state";
  unlink(state_file.c_str());
  REQUIRE(m.journal.open(state_file) == "");
  const auto file_text = [&] {
    std::ifstream in(state_file);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  };
  // 9002 reweighted by the operator, and a plan under way that sheds from it.
  backend_override heavier{config_line(m.first->backends[1]), shm::admin_state::ready, 3};
  REQUIRE(m.journal.set("127.0.0.1:9002", heavier) == "");
  m.journal.apply(t, *m.first);
  t.workers[0].backends[0].active = 2;
  t.workers[1].backends[1].active = 30;
  shaping_config settings = m.first->shaping;
  settings.rebalance = rebalance_mode::auto_;
  rebalancer shaping;
  shaping.tick(t, settings, m.now.unix_ms);
  REQUIRE(shaping.plan_now(t, settings).needed());
  shaping.start(t, shaping.plan_now(t, settings), m.now.unix_ms);
  REQUIRE(t.backends[1].shed_rate_milli != 0);
  // Then 9001 drained; and the cluster agent counts the other nodes' connections.
  backend_override drained{config_line(m.first->backends[0]), shm::admin_state::drain, 0};
  REQUIRE(m.journal.set("127.0.0.1:9001", drained) == "");
  m.journal.apply(t, *m.first);
  shm::copy_fixed(t.cluster.node_id, shm::name_chars, "web-a");
  shm::set_cluster_link(t, shm::cluster_link::connected, m.now.unix_ms);
  shm::cluster_peer other{};
  shm::copy_fixed(other.node_id, shm::name_chars, "web-b");
  other.seen_ms = m.now.unix_ms;
  shm::write_cluster_view(t, {other}, "");
  t.backends[0].cluster_active = 40;
  t.backends[1].cluster_active = 7;
  const std::string before = m.status();
  const std::uint32_t high_water = t.header.backend_high_water;
  const override_map overrides = m.journal.overrides();
  const std::string journal_text = file_text();

  // The reload would drop 9001's override (its line changes), keep 9002's and add 9003.
  auto next = std::make_shared<config>(
      *config_with({"127.0.0.1:9001,weight=2", "127.0.0.1:9002", "127.0.0.1:9003"}, 2));
  m.reload(next);
  REQUIRE(t.backends[2].state == shm::backend_state::staged);
  // While it is pending the master's housekeeping goes on, and the agent also counts the staged
  // backend's connections on the other nodes.
  t.backends[2].cluster_active = 12;
  shaping.tick(t, settings, m.now.unix_ms);
  m.ready(2);
  m.ops.exit_code(m.ops.pid_of(3), 1);
  m.children->reap_children(m.now);
  REQUIRE(m.replies.size() == 1);
  CHECK(m.replies[0].second.find("generation 2 cannot start") == 0);
  shaping.tick(t, settings, m.now.unix_ms);

  CHECK(m.status() == before);
  CHECK(t.header.backend_high_water == high_water);
  CHECK(m.journal.overrides() == overrides);
  CHECK(file_text() == journal_text);
  CHECK(t.backends[0].admin == shm::admin_state::drain);
  CHECK(t.backends[1].weight == 3);
  CHECK(t.backends[1].shed_rate_milli != 0);
  CHECK(t.header.rebalance_running == 1);
  unlink(state_file.c_str());
}

TEST_CASE("child_table.an_old_worker_that_crashes_during_a_reload_comes_back_with_the_old_config") {
  master_fixture m;
  auto next = std::make_shared<config>(*config_with({"127.0.0.1:9003"}, 2));
  m.later(respawn_policy::stable_after_ms + 1);
  m.reload(next);
  m.ops.killed_by(m.ops.pid_of(1), SIGKILL);
  m.children->reap_children(m.now);
  REQUIRE(m.bodies.back().row == 1);
  CHECK(m.bodies.back().cfg == m.first.get());
  CHECK(m.bodies.back().number == 1);
  CHECK(m.state_of(1) == shm::worker_state::starting);
  CHECK(m.table->workers[1].generation == 1);
  // The reload goes on and commits; the respawned worker then drains with its generation.
  m.ready(2);
  m.ready(3);
  REQUIRE(m.replies.size() == 1);
  CHECK(m.replies[0].first);
  CHECK(m.ops.was_sent(1, child_channel::msg_drain));
  CHECK(m.table->backends[2].state == shm::backend_state::active);
  CHECK(m.table->backends[0].state == shm::backend_state::removed);
}

TEST_CASE("child_table.failed_starts_back_off_and_fatal_configuration_is_not_respawned") {
  master_fixture m;
  m.ops.exit_code(m.ops.pid_of(0), 1);
  m.children->reap_children(m.now);
  CHECK(m.state_of(0) == shm::worker_state::starting);  // the first quick death: at once
  const pid_t second = m.ops.pid_of(0);
  m.ops.exit_code(second, 1);
  m.children->reap_children(m.now);
  CHECK(m.state_of(0) == shm::worker_state::backoff);
  CHECK(m.table->workers[0].backoff_until_ms == m.now.unix_ms + respawn_policy::first_delay_ms);
  m.later(respawn_policy::first_delay_ms - 1);
  m.children->tick(m.now);
  CHECK(m.ops.pid_of(0) == second);
  m.later(1);
  m.children->tick(m.now);
  CHECK(m.ops.pid_of(0) != second);
  CHECK(m.state_of(0) == shm::worker_state::starting);
  CHECK(m.table->workers[0].restarts == 2);

  m.ops.exit_code(m.ops.pid_of(1), 78);
  m.children->reap_children(m.now);
  CHECK(m.state_of(1) == shm::worker_state::failed);
  const std::size_t spawns = m.ops.spawns.size();
  m.later(60'000);
  m.children->tick(m.now);
  CHECK(m.ops.spawns.size() == spawns);
  // A restart that commits supersedes the failed slot: its row is free again.
  m.children->begin_restart(m.first, reload_transaction{}, "", m.reply_to(), m.now);
  m.ready(2);
  m.ready(3);
  CHECK(m.state_of(1) == shm::worker_state::empty);
}

TEST_CASE("child_table.a_draining_generation_is_killed_after_its_deadline_then_forgotten") {
  master_fixture m;
  const pid_t old0 = m.ops.pid_of(0);
  const pid_t old1 = m.ops.pid_of(1);
  m.children->begin_restart(m.first, reload_transaction{}, "", m.reply_to(), m.now);
  m.ready(2);
  m.ready(3);
  m.ops.exit_code(old1, 0);
  m.children->reap_children(m.now);
  CHECK(m.state_of(1) == shm::worker_state::empty);
  m.later(30'000 + drain_kill_grace_ms - 1);
  m.children->tick(m.now);
  CHECK_FALSE(m.ops.was_killed(old0));
  m.later(2);
  m.children->tick(m.now);
  CHECK(m.ops.was_killed(old0));
  m.ops.killed_by(old0, SIGKILL);
  m.children->reap_children(m.now);
  CHECK(m.children->live_workers() == 2);
  // Its rows are free: the next generation takes them.
  m.children->begin_restart(m.first, reload_transaction{}, "", m.reply_to(), m.now);
  CHECK(m.state_of(0) == shm::worker_state::starting);
  CHECK(m.state_of(1) == shm::worker_state::starting);
}

TEST_CASE("child_table.a_stop_rolls_back_a_pending_restart_and_drains_the_rest") {
  master_fixture m;
  m.children->begin_restart(m.first, reload_transaction{}, "", m.reply_to(), m.now);
  m.children->stop(true, m.now);
  REQUIRE(m.replies.size() == 1);
  CHECK(m.replies[0].second == "the instance is stopping");
  CHECK(m.ops.was_sent(0, child_channel::msg_drain));
  CHECK(m.ops.was_killed(m.ops.pid_of(2)));
  for (const child_id row : {0, 1, 2, 3}) m.ops.exit_code(m.ops.pid_of(row), 0);
  m.children->reap_children(m.now);
  CHECK(m.children->live_workers() == 0);
}

TEST_CASE("helper_child.respawns_with_backoff_and_stops_for_good") {
  fake_ops ops;
  clock_reading now{5'000, 1'700'000'000'000};
  std::vector<std::pair<pid_t, bool>> pids;
  helper_child checker([] { return child_spec{checker_id, "the checker", -1, [](int) { return 0; }}; },
                       [&](pid_t pid, bool respawn) { pids.emplace_back(pid, respawn); });
  checker.start(ops, now);
  const pid_t first = checker.pid();
  ops.exit_code(first, 1);
  CHECK(checker.on_exit(ops, *ops.reap(), now));
  CHECK(checker.pid() != 0);  // the first quick death: at once
  ops.exit_code(checker.pid(), 1);
  CHECK(checker.on_exit(ops, *ops.reap(), now));
  CHECK(checker.pid() == 0);
  now.monotonic_ms += respawn_policy::first_delay_ms;
  checker.tick(ops, now);
  CHECK(checker.pid() != 0);
  CHECK(pids.back().second);  // a respawn, for the table's restart count
  checker.stop(ops);
  CHECK(ops.was_sent(checker_id, child_channel::msg_stop));
  ops.exit_code(checker.pid(), 0);
  CHECK(checker.on_exit(ops, *ops.reap(), now));
  now.monotonic_ms += 60'000;
  checker.tick(ops, now);
  CHECK(checker.pid() == 0);
  CHECK_FALSE(checker.on_exit(ops, exited_child{4242, 0}, now));
}

TEST_CASE("helper_child.resumed_after_a_stop_starts_again_at_once_or_once_it_has_exited") {
  // A retiring master whose upgraded successor died takes its helpers back.
  fake_ops ops;
  clock_reading now{5'000, 1'700'000'000'000};
  helper_child checker([] { return child_spec{checker_id, "the checker", -1, [](int) { return 0; }}; },
                       [](pid_t, bool) {});
  checker.start(ops, now);
  checker.stop(ops);
  ops.exit_code(checker.pid(), 0);
  CHECK(checker.on_exit(ops, *ops.reap(), now));
  CHECK(checker.pid() == 0);
  checker.resume(ops, now);
  const pid_t again = checker.pid();
  CHECK(again != 0);
  // Resumed while the stopped one is still exiting: its exit brings the next one.
  checker.stop(ops);
  checker.resume(ops, now);
  CHECK(checker.pid() == again);
  ops.exit_code(again, 0);
  CHECK(checker.on_exit(ops, *ops.reap(), now));
  CHECK(checker.pid() != 0);
  CHECK(checker.pid() != again);
}

TEST_CASE("child_table.with_handover_on_the_old_workers_are_asked_to_hand_over_not_a_stop") {
  master_fixture m;
  auto next = std::make_shared<config>(*m.first);
  next->handover = true;
  m.children->begin_restart(next, reload_transaction{}, "", m.reply_to(), m.now);
  m.ready(2);
  CHECK_FALSE(m.ops.was_sent(0, child_channel::msg_handover));  // not before all are ready
  m.ready(3);
  REQUIRE(m.replies.size() == 1);
  CHECK(m.replies[0].second.find("generation 1 handing over then draining 2") != std::string::npos);
  CHECK(m.ops.was_sent(0, child_channel::msg_handover));
  CHECK(m.ops.was_sent(1, child_channel::msg_handover));
  CHECK_FALSE(m.ops.was_sent(0, child_channel::msg_drain));
  CHECK(m.state_of(0) == shm::worker_state::draining);
  // A graceful stop drains: nobody is left to take the tunnels.
  m.children->stop(true, m.now);
  CHECK(m.ops.was_sent(2, child_channel::msg_drain));
  CHECK_FALSE(m.ops.was_sent(2, child_channel::msg_handover));
}

TEST_CASE("child_table.a_reload_keeps_runtime_backends_until_the_file_configures_them") {
  master_fixture m;
  shm::table& t = *m.table;
  const std::string state_file =
      "/tmp/wslb-child-table-runtime-" + std::to_string(getpid()) + ".state";
  unlink(state_file.c_str());
  REQUIRE(m.journal.open(state_file) == "");
  // At run time: 9003 added, 9001 removed.
  const runtime_backend added{true, "127.0.0.1:9003,weight=4"};
  const runtime_backend removed{false, "127.0.0.1:9001,weight=1"};
  REQUIRE(m.journal.set_runtime("127.0.0.1:9003", &added) == "");
  REQUIRE(m.journal.set_runtime("127.0.0.1:9001", &removed) == "");

  // A reload of the same file: the runtime changes join it, nothing is dropped.
  auto same = std::make_shared<config>(*config_with({"127.0.0.1:9001", "127.0.0.1:9002"}, 2));
  std::vector<std::string> dropped;
  reload_transaction tx = reload_steps(t, m.journal, &dropped);
  REQUIRE(tx.prepare(*same) == "");
  CHECK(dropped.empty());
  REQUIRE(same->backends.size() == 2);
  CHECK(same->backends[0].where.to_string() == "127.0.0.1:9002");
  CHECK(same->backends[1].where.to_string() == "127.0.0.1:9003");
  CHECK(t.backends[same->backends[1].row].state == shm::backend_state::staged);
  m.children->begin_restart(same, std::move(tx), "reloaded", m.reply_to(), m.now);
  m.ready(2);
  m.ready(3);
  REQUIRE(m.replies.size() == 1);
  CHECK(m.replies[0].first);
  CHECK(t.backends[0].state == shm::backend_state::removed);
  CHECK(t.backends[same->backends[1].row].state == shm::backend_state::active);
  CHECK(t.backends[same->backends[1].row].weight == 4);
  CHECK(m.journal.runtime_backends().size() == 2);

  // The file now has 9003 with its own line: the file wins, the addition is forgotten on
  // commit (and not before: a refused reload would keep it).
  auto edited = std::make_shared<config>(
      *config_with({"127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003,weight=2"}, 2));
  reload_transaction tx2 = reload_steps(t, m.journal, &dropped);
  REQUIRE(tx2.prepare(*edited) == "");
  CHECK(dropped == std::vector<std::string>{
                       "127.0.0.1:9003 (its addition: now configured as 127.0.0.1:9003,weight=2)"});
  CHECK(m.journal.runtime_backends().size() == 2);
  m.children->begin_restart(edited, std::move(tx2), "reloaded", m.reply_to(), m.now);
  m.ready(4);  // generation 1 still drains in rows 0 and 1
  m.ready(5);
  REQUIRE(m.replies.size() == 2);
  CHECK(m.replies[1].first);
  CHECK(m.journal.runtime_backends().size() == 1);
  CHECK(m.journal.runtime_backends().count("127.0.0.1:9001") == 1);
  CHECK(t.backends[edited->backends.back().row].weight == 2);
  unlink(state_file.c_str());
}
