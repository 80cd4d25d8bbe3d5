#include "cli/cluster_status.h"

#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "cli/status_view.h"
#include "common/json_text.h"
#include "shm/cluster_view.h"

namespace wslb::cli {

namespace {

constexpr auto relaxed = std::memory_order_relaxed;

std::int64_t age_ms(std::int64_t since, std::int64_t now) {
  return since > 0 && now > since ? now - since : 0;
}

}  // namespace

bool cluster_enabled(const shm::table& t) { return t.cluster.node_id[0] != '\0'; }

const char* to_string(shm::cluster_link link) {
  switch (link) {
    case shm::cluster_link::off: return "off";
    case shm::cluster_link::connecting: return "connecting";
    case shm::cluster_link::connected: return "connected";
    case shm::cluster_link::unreachable: return "unreachable";
  }
  return "?";
}

std::string render_cluster_json(const shm::table& t, std::int64_t now) {
  if (!cluster_enabled(t)) return "{\"enabled\":false}";
  const shm::cluster_row& c = t.cluster;
  const shm::cluster_view_copy view = shm::read_cluster_view(t);
  const std::int64_t last_round = c.last_round_ms.load(relaxed);
  std::string out = "{\"enabled\":true,\"node_id\":" + json_string(shown(c.node_id)) +
                    ",\"redis\":" + json_string(shown(c.redis)) + ",\"link\":\"" +
                    to_string(c.link.load(relaxed)) + "\",\"link_for_ms\":" +
                    std::to_string(age_ms(c.link_since_ms.load(relaxed), now)) +
                    ",\"last_exchange_ms_ago\":" +
                    (last_round ? std::to_string(age_ms(last_round, now)) : "null") +
                    ",\"exchanges\":" + std::to_string(c.rounds.load(relaxed)) +
                    ",\"interval_ms\":" + std::to_string(c.interval_ms.load(relaxed)) +
                    ",\"agent_pid\":" + std::to_string(c.pid.load(relaxed)) +
                    ",\"restarts\":" + std::to_string(c.restarts.load(relaxed)) +
                    ",\"last_error\":" + json_string(printable_text(view.last_error)) +
                    ",\"nodes_seen\":" + std::to_string(view.peers.size()) + ",\"nodes\":[";
  bool first = true;
  for (const shm::cluster_peer& p : view.peers) {
    out += first ? "" : ",";
    first = false;
    out += "{\"node_id\":" + json_string(shown(p.node_id)) + ",\"age_ms\":" +
           std::to_string(age_ms(p.seen_ms, now)) + ",\"connections\":" +
           std::to_string(p.connections) + "}";
  }
  return out + "]}";
}

std::string render_cluster_text(const shm::table& t, std::int64_t now) {
  if (!cluster_enabled(t)) return "";
  const shm::cluster_row& c = t.cluster;
  const shm::cluster_view_copy view = shm::read_cluster_view(t);
  char line[512];
  std::snprintf(line, sizeof line,
                "\nCLUSTER node %s  redis %s  %s for %lld s  interval %u ms  agent pid %d  "
                "restarts %u\n",
                shown(c.node_id).c_str(), shown(c.redis).c_str(), to_string(c.link.load(relaxed)),
                static_cast<long long>(age_ms(c.link_since_ms.load(relaxed), now) / 1000),
                c.interval_ms.load(relaxed), c.pid.load(relaxed), c.restarts.load(relaxed));
  std::string out = line;
  if (!view.last_error.empty()) out += "  last error: " + printable_text(view.last_error) + "\n";
  std::snprintf(line, sizeof line, "  %-24s %10s %12s\n", "OTHER NODE", "AGE", "CONNECTIONS");
  out += line;
  for (const shm::cluster_peer& p : view.peers) {
    std::snprintf(line, sizeof line, "  %-24s %8.1f s %12" PRIu64 "\n", shown(p.node_id).c_str(),
                  static_cast<double>(age_ms(p.seen_ms, now)) / 1000.0, p.connections);
    out += line;
  }
  if (view.peers.empty()) out += "  (none seen)\n";
  return out;
}

}  // namespace wslb::cli
