#include "supervisor/agent_child.h"

#include "cluster/agent_main.h"
#include "common/log.h"
#include "shm/cluster_view.h"
#include "shm/table_ops.h"

namespace wslb::supervisor {

helper_child make_cluster_agent(std::shared_ptr<const config> cfg, shm::table& t) {
  shm::copy_fixed(t.cluster.node_id, shm::name_chars, cfg->cluster.node_id);
  shm::copy_fixed(t.cluster.redis, shm::address_chars, cfg->cluster.redis.to_string());
  return helper_child(
      [cfg, &t] {
        return child_spec{cluster_agent_id, "the cluster agent", -1, [cfg, &t](int master_fd) {
                            return cluster::run_agent(*cfg, t, master_fd);
                          }};
      },
      [&t](pid_t pid, bool respawn) {
        if (pid == 0) shm::clear_cluster_view(t, unix_ms());
        t.cluster.pid.store(pid, std::memory_order_relaxed);
        if (respawn) t.cluster.restarts.fetch_add(1, std::memory_order_relaxed);
      });
}

}  // namespace wslb::supervisor
