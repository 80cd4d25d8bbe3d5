#include "cluster/peer_set.h"

#include "shm/cluster_view.h"
#include "shm/table_ops.h"

namespace wslb::cluster {

void peer_set::on_round(const std::vector<node_snapshot>& snapshots, std::int64_t now_ms) {
  std::map<std::string, peer> next;
  for (const node_snapshot& s : snapshots) {
    if (s.node_id == own_node_id_) continue;
    auto known = peers_.find(s.node_id);
    peer p{s, now_ms};
    if (known != peers_.end() && known->second.latest.boot == s.boot) {
      // Same boot: fresh only if it published since; an unchanged seq keeps its age.
      if (known->second.latest.seq == s.seq) p.seen_ms = known->second.seen_ms;
    }
    next[s.node_id] = p;
  }
  peers_ = std::move(next);
}

void peer_set::expire(std::int64_t now_ms, std::int64_t max_age_ms) {
  std::erase_if(peers_, [&](const auto& entry) { return now_ms - entry.second.seen_ms > max_age_ms; });
}

void peer_set::publish(shm::table& t, std::string_view error) const {
  const std::size_t rows = shm::backend_rows_in_use(t);
  for (std::size_t b = 0; b < rows; ++b) {
    shm::backend_row& row = t.backends[b];
    const std::string_view address = shm::address_of(row);
    std::uint64_t others = 0;
    for (const auto& [id, p] : peers_) {
      for (const auto& [their_address, n] : p.latest.counts) {
        if (their_address == address) others += n;
      }
    }
    row.cluster_active.store(others, std::memory_order_relaxed);
  }
  std::vector<shm::cluster_peer> shown;
  for (const auto& [id, p] : peers_) {
    shm::cluster_peer entry{};
    shm::copy_fixed(entry.node_id, shm::name_chars, id);
    entry.seen_ms = p.seen_ms;
    entry.connections = p.latest.total();
    shown.push_back(entry);
  }
  shm::write_cluster_view(t, shown, error);
}

}  // namespace wslb::cluster
