#include "cluster/agent_main.h"

#include <hiredis/hiredis.h>
#include <uv.h>

#include <algorithm>
#include <optional>
#include <random>

#include "cluster/exchange.h"
#include "cluster/peer_set.h"
#include "cluster/redis_link.h"
#include "common/exit_codes.h"
#include "common/helper_loop.h"
#include "common/log.h"
#include "shm/cluster_view.h"

namespace wslb::cluster {

namespace {
constexpr const char* who = "cluster";
constexpr auto relaxed = std::memory_order_relaxed;

// A snapshot lives three intervals in Redis, and the figures of a node this agent can no longer
// hear from live as long here: one lost round never drops a node, a dead one goes quickly.
constexpr std::uint32_t snapshot_lifetime_intervals = 3;

std::uint64_t new_boot_id() {
  std::random_device random;
  return (std::uint64_t{random()} << 32) ^ random();
}

// What the agent owns besides its loop (helper_loop): the link, the peers, the tick.
struct agent_process {
  agent_process(const config& c, shm::table& t)
      : cfg(c), table(t), peers(c.cluster.node_id), boot(new_boot_id()) {}

  const config& cfg;
  shm::table& table;
  peer_set peers;
  std::uint64_t boot;
  std::uint64_t seq = 0;
  std::optional<redis_link> link;  // made once the loop exists
  uv_timer_t tick{};
  bool exchange_in_flight = false;
  // One log line when an outage starts, and one more if the retries fail for another reason
  // (the connection was closed, then AUTH is refused): not one per reconnect attempt.
  int outage_lines = 0;
  std::string outage_reason;
  bool duplicate_logged = false;
  std::string last_error;

  std::int64_t lifetime_ms() const {
    return std::int64_t{snapshot_lifetime_intervals} * cfg.cluster.interval_ms;
  }

  // Called once by the helper loop when the process is told to stop.
  void close_handles() {
    link->close();
    uv_close(reinterpret_cast<uv_handle_t*>(&tick), nullptr);
  }

  void on_tick() {
    peers.expire(unix_ms(), lifetime_ms());
    peers.publish(table, last_error);
    exchange();
  }

  void exchange() {
    if (exchange_in_flight || !link->ready()) return;
    node_snapshot own{cfg.cluster.node_id, boot, ++seq, unix_ms(), local_counts(table)};
    exchange_in_flight = link->command(
        exchange_command(own, static_cast<std::uint32_t>(lifetime_ms())),
        [this](redisReply* r) { on_exchanged(r); });
  }

  void on_exchanged(redisReply* reply) {
    exchange_in_flight = false;
    if (!reply) return;  // the link broke; on_lost says so
    exchange_result result;
    std::string error;
    const std::int64_t now = unix_ms();
    if (!parse_exchange_reply(reply, result, error)) {
      report_trouble(error);
      return;
    }
    if (result.previous_own && result.previous_own->boot != boot && seq > 1 && !duplicate_logged) {
      duplicate_logged = true;
      log_line(who, "another node publishes as node id '%s' too: give each node its own --node-id",
               cfg.cluster.node_id.c_str());
    }
    peers.on_round(result.others, now);
    last_error.clear();
    peers.publish(table, last_error);
    table.cluster.last_round_ms.store(now, relaxed);
    table.cluster.rounds.fetch_add(1, relaxed);
    if (table.cluster.link.load(relaxed) != shm::cluster_link::connected) {
      log_line(who, "exchanging live counts through Redis at %s as node '%s' (%zu other nodes)",
               cfg.cluster.redis.to_string().c_str(), cfg.cluster.node_id.c_str(), peers.size());
    }
    shm::set_cluster_link(table, shm::cluster_link::connected, now);
    outage_lines = 0;
  }

  void on_ready() { exchange(); }

  void on_lost(const std::string& why) {
    exchange_in_flight = false;
    report_trouble(why);
  }

  // The link is down or rounds fail: the node keeps serving on local counts once the other
  // nodes' figures age out (expire() in the tick), and says so once.
  void report_trouble(const std::string& why) {
    if (outage_lines == 0) {
      log_line(who, "Redis at %s: %s; balancing on local counts until it answers again (retrying)",
               cfg.cluster.redis.to_string().c_str(), why.c_str());
      outage_lines = 1;
      outage_reason = why;
    } else if (outage_lines == 1 && why != outage_reason) {
      log_line(who, "Redis at %s: still unreachable: %s", cfg.cluster.redis.to_string().c_str(),
               why.c_str());
      outage_lines = 2;
    }
    last_error = why;
    shm::set_cluster_link(table, shm::cluster_link::unreachable, unix_ms());
    peers.publish(table, last_error);
  }
};

}  // namespace

int run_agent(const config& cfg, shm::table& table, int master_fd) {
  helper_loop process(who, master_fd);
  if (!process.open()) return exit_code::failure;
  agent_process agent(cfg, table);
  table.cluster.interval_ms.store(cfg.cluster.interval_ms, relaxed);
  shm::set_cluster_link(table, shm::cluster_link::connecting, unix_ms());
  // A reply later than two intervals (and at least a second) means the link is gone: a node cut
  // off from Redis would otherwise wait for TCP's retransmissions.
  const std::uint32_t deadline_ms = std::max<std::uint32_t>(2 * cfg.cluster.interval_ms, 1000);
  agent.link.emplace(process.loop(), cfg.cluster.redis, deadline_ms,
                     redis_link::events{[&agent] { agent.on_ready(); },
                                        [&agent](const std::string& why) { agent.on_lost(why); }});
  uv_timer_init(process.loop(), &agent.tick);
  agent.tick.data = &agent;
  uv_timer_start(&agent.tick, [](uv_timer_t* h) { static_cast<agent_process*>(h->data)->on_tick(); },
                 cfg.cluster.interval_ms, cfg.cluster.interval_ms);
  agent.link->start();
  return process.run([&agent] { agent.close_handles(); });
}

}  // namespace wslb::cluster
