// The other nodes of the tier as this node's agent knows them, and the one function that turns
// them into the table's figures (backend_row::cluster_active, the peer list for `status`).
// Pure apart from writing the table: the unit tests drive it on a plain table image.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "cluster/snapshot.h"
#include "shm/layout.h"

namespace wslb::cluster {

class peer_set {
 public:
  explicit peer_set(std::string own_node_id) : own_node_id_(std::move(own_node_id)) {}

  // A round's answer from Redis: every snapshot that had not expired, this node's own among
  // them or not (it is skipped). A node missing from the answer is gone: its key expired. A
  // node with a new boot id replaces its old self; a snapshot with a new seq is fresh as of
  // `now_ms`.
  void on_round(const std::vector<node_snapshot>& snapshots, std::int64_t now_ms);

  // Forgets the nodes whose snapshot has not changed for longer than `max_age_ms`: the
  // figures age out by the same rule as the keys in Redis even while Redis is unreachable.
  void expire(std::int64_t now_ms, std::int64_t max_age_ms);

  // Writes the sum of the known nodes' counts into every backend row in use whose address
  // matches (addresses this node does not have are ignored), and the peer list with `error`
  // (the link's last error, "" when fine). Agent only.
  void publish(shm::table& t, std::string_view error) const;

  std::size_t size() const { return peers_.size(); }

 private:
  struct peer {
    node_snapshot latest;
    std::int64_t seen_ms = 0;  // when `latest` arrived with a new seq or boot
  };
  std::string own_node_id_;
  std::map<std::string, peer> peers_;  // by node id
};

}  // namespace wslb::cluster
