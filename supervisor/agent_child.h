// The cluster agent as one of the master's helper children (only with --cluster): spawned with
// the instance, respawned like the checker, and its figures dropped from the table whenever it
// exits, so a dead agent's view of the other nodes never steers the workers' picks.
#pragma once

#include <memory>

#include "common/config.h"
#include "shm/layout.h"
#include "supervisor/helper_child.h"

namespace wslb::supervisor {

inline constexpr child_id cluster_agent_id = checker_id + 1;

// The helper for `cfg`'s cluster settings, which never change on reload. Writes what `status`
// shows about this node (its id, the Redis address without the password) into `t` first.
helper_child make_cluster_agent(std::shared_ptr<const config> cfg, shm::table& t);

}  // namespace wslb::supervisor
