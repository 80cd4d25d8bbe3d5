#include "shm/cluster_view.h"

#include <algorithm>
#include <cstring>

#include "shm/table_ops.h"

namespace wslb::shm {

namespace {
constexpr auto relaxed = std::memory_order_relaxed;
}  // namespace

std::uint64_t tier_active(const table& t, std::size_t b) {
  return sum_active(t, b) + t.backends[b].cluster_active.load(relaxed) +
         t.backends[b].inherited_active.load(relaxed);
}

void write_cluster_view(table& t, const std::vector<cluster_peer>& peers, std::string_view error) {
  cluster_row& c = t.cluster;
  // One writer (the agent): no claim needed, only the odd value that tells readers to retry.
  const std::uint32_t seq = c.view_seq.load(relaxed);
  c.view_seq.store(seq | 1u, relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  const std::size_t n = std::min(peers.size(), max_cluster_peers);
  std::copy_n(peers.begin(), n, c.peers);
  c.peer_count = static_cast<std::uint32_t>(n);
  copy_fixed(c.last_error, error_chars, error);
  c.view_seq.store((seq | 1u) + 1, std::memory_order_release);
}

cluster_view_copy read_cluster_view(const table& t) {
  const cluster_row& c = t.cluster;
  cluster_view_copy out;
  for (int attempt = 0; attempt < 1000; ++attempt) {
    const std::uint32_t before = c.view_seq.load(std::memory_order_acquire);
    if (before & 1u) continue;
    cluster_peer peers[max_cluster_peers];
    char error[error_chars];
    const std::size_t n = std::min<std::size_t>(c.peer_count, max_cluster_peers);
    std::memcpy(peers, c.peers, sizeof peers);
    std::memcpy(error, c.last_error, sizeof error);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (c.view_seq.load(relaxed) != before) continue;
    error[error_chars - 1] = '\0';
    for (std::size_t i = 0; i < n; ++i) {
      peers[i].node_id[name_chars - 1] = '\0';
      out.peers.push_back(peers[i]);
    }
    out.last_error = error;
    return out;
  }
  out.last_error = "(being updated)";
  return out;
}

void set_cluster_link(table& t, cluster_link link, std::int64_t now_ms) {
  if (t.cluster.link.load(relaxed) == link) return;
  t.cluster.link_since_ms.store(now_ms, relaxed);
  t.cluster.link.store(link, relaxed);
}

void clear_cluster_view(table& t, std::int64_t now_ms) {
  for (backend_row& row : t.backends) row.cluster_active.store(0, relaxed);
  write_cluster_view(t, {}, "");
  t.cluster.pid.store(0, relaxed);
  set_cluster_link(t, cluster_link::connecting, now_ms);
}

}  // namespace wslb::shm
