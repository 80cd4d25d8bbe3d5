// The cluster agent's part of the table: what it writes each round (the other nodes' live
// counts per backend, the peers it saw, the state of its link to Redis) and what `status` and
// the master read back. The agent is the only writer while it lives; the master resets it after
// reaping the agent.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "shm/layout.h"

namespace wslb::shm {

// A consistent copy of the peers and the last error (see cluster_row::view_seq).
struct cluster_view_copy {
  std::vector<cluster_peer> peers;
  std::string last_error;
};

// Live connections to backend row `b` across the tier: this node's workers (sum_active) plus
// the other nodes' last-known counts, plus the predecessor's not yet handed over after an
// upgrade to another layout (inherited_active). What least-conn compares. Any process.
std::uint64_t tier_active(const table& t, std::size_t b);

// Agent only: replaces the peer list and the last error under the seqlock. At most
// max_cluster_peers peers are kept (the rest are still counted in cluster_active).
void write_cluster_view(table& t, const std::vector<cluster_peer>& peers, std::string_view error);
// Any process: a consistent copy (retries while the agent is writing).
cluster_view_copy read_cluster_view(const table& t);

// Agent only: records a change of the link's state (and when it happened).
void set_cluster_link(table& t, cluster_link link, std::int64_t now_ms);

// Master only, after reaping the agent: the other nodes' figures are dropped, so a dead
// agent's counts never steer the pick; the peers are cleared and the link is `connecting`.
void clear_cluster_view(table& t, std::int64_t now_ms);

}  // namespace wslb::shm
