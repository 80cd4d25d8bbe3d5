// One exchange with Redis, the agent's whole use of it each interval: a Lua script that, in one
// atomic step, stores this node's snapshot under its own key (expiring after `ttl_ms`), adds the
// node to the tier's member set, and returns the previous value of its own key and the current
// snapshot of every other member, dropping from the set the members whose key has expired.
//
// Keys (one tier per Redis database: `/DB` in the --cluster URL separates tiers):
//   wslb:node:<node-id>   this node's snapshot (see snapshot.h), PX ttl
//   wslb:nodes            a set of node ids, so that no one needs KEYS or SCAN
// Needs Redis 6.2 or later (SET ... GET).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cluster/snapshot.h"

struct redisReply;

namespace wslb::cluster {

inline constexpr std::string_view members_key = "wslb:nodes";
std::string node_key(std::string_view node_id);

// The EVAL command (argv) that publishes `own` and reads the others.
std::vector<std::string> exchange_command(const node_snapshot& own, std::uint32_t ttl_ms);

struct exchange_result {
  std::optional<node_snapshot> previous_own;  // what our key held before this round
  std::vector<node_snapshot> others;
  std::size_t unreadable = 0;                 // values under wslb:node:* that did not decode
};

// Reads the script's answer. False, with what was wrong in `error`, for an error reply or an
// answer of another shape (something that is not our script answered).
bool parse_exchange_reply(const redisReply* r, exchange_result& out, std::string& error);

}  // namespace wslb::cluster
