// One node's snapshot of its live connections per backend, as it lies in Redis: the only thing
// the nodes of a tier exchange. Each node writes its own key and reads the others'; nothing is
// ever incremented by two nodes, so a node that dies leaks nothing: its key expires.
//
// The value is text, one field per line, so an operator can read it with redis-cli:
//   wslb-snapshot 1
//   node web-a
//   boot 9f3c0d2e71a4b605
//   seq 1234
//   ms 1764412345678
//   backend 10.0.0.5:9001 37
//   backend app2:9001 12
// Pure: the unit tests encode and decode without a Redis.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "shm/layout.h"

namespace wslb::cluster {

struct node_snapshot {
  std::string node_id;
  std::uint64_t boot = 0;      // random per agent start: a restarted node is a new boot
  std::uint64_t seq = 0;       // +1 per published snapshot of this boot
  std::int64_t published_ms = 0;
  // Backend "HOST:PORT" as configured -> live connections of that node on it.
  std::vector<std::pair<std::string, std::uint64_t>> counts;

  std::uint64_t total() const;
};

std::string encode(const node_snapshot& s);
// nullopt for anything that is not a well-formed snapshot of this format (a value another
// program left under the key, a newer format): such a value is ignored, never half-read.
std::optional<node_snapshot> decode(std::string_view text);

// This node's live connections per backend, summed over its worker rows, for every backend row
// in use (active or draining after a reload), added up by address.
std::vector<std::pair<std::string, std::uint64_t>> local_counts(const shm::table& t);

}  // namespace wslb::cluster
