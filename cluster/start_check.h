// The one synchronous look at Redis, made by `wslb run` before the master starts: a --cluster
// URL that reaches something refusing us (a wrong password, a missing database, a server that
// does not speak Redis) is a configuration error the operator must see at once, not a line in
// the log of a balancer that runs alone. A Redis that is merely unreachable is not: the node
// starts on local counts and the agent keeps trying.
#pragma once

#include <cstdint>
#include <string>

#include "common/config.h"

namespace wslb::cluster {

enum class start_verdict {
  ok,
  unreachable,  // cannot connect, or no answer in time: start anyway
  refused,      // it answered, and not as a Redis that accepts us: do not start
};

struct start_check_result {
  start_verdict verdict = start_verdict::ok;
  std::string detail;  // why, for the operator
};

// Connects, AUTHs, SELECTs and runs a trivial script (the agent's exchange is a script), each
// step bounded by `timeout_ms`. Blocking; called once, before the master exists.
start_check_result check_redis_at_start(const redis_target& target, std::uint32_t timeout_ms);

}  // namespace wslb::cluster
