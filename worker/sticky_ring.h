// Consistent hashing for the sticky balancing modes (source-hash, header:, cookie:, query:):
// a key always maps to the same healthy backend, and when a backend goes down or comes back
// only the keys that belong to it move. Each worker keeps one ring and rebuilds it when the
// health or the configuration of its backends changes; lookups are a binary search.
//
// Every backend owns points_per_weight × weight points on a 64-bit ring, placed by hashing its
// address with the point's number, so a backend's points do not depend on which other backends
// exist: removing a backend leaves every other point where it was, and its keys go to the next
// point clockwise. Two workers (or two processes) given the same members build the same ring.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace wslb::worker {

// One configured backend, healthy or not (see rebuild).
struct ring_member {
  std::size_t row = 0;           // the backend's row in the shared table: what lookup returns
  std::string_view address;      // "HOST:PORT": places the backend's points
  std::uint32_t weight = 1;      // 0 counts as absent
  bool healthy = true;           // only healthy members get points
};

class sticky_ring {
 public:
  static constexpr std::uint32_t points_per_weight = 100;
  // Above this many points in all, every backend gets proportionally fewer (at least one per
  // unit of weight), so that a rebuild stays cheap with weights up to 1000.
  static constexpr std::size_t max_points = 16 * 1024;

  // Replaces the ring with the healthy members' points. Pass every configured backend, healthy
  // or not: the number of points per unit of weight is chosen from all of them, so a health
  // change never moves the points of the backends that stay. Reuses its storage: after the
  // first build a rebuild of the same size allocates nothing. Called by a worker when its view
  // of health or of the configuration changes.
  void rebuild(std::span<const ring_member> members);

  // The row of the backend that owns `key_hash`, or nullopt when no member is healthy.
  std::optional<std::size_t> lookup(std::uint64_t key_hash) const;
  std::optional<std::size_t> lookup(std::string_view key) const;

  bool empty() const { return points_.empty(); }
  std::size_t point_count() const { return points_.size(); }

  const std::vector<std::uint64_t>& points_for_test() const { return points_; }

  // Rows above this are ignored (the table has 64).
  static constexpr std::uint64_t row_mask = 0xFFFF;

 private:
  // Sorted ring positions, the owner's row in the low 16 bits (48 bits of position are plenty
  // for at most ~64k points).
  std::vector<std::uint64_t> points_;
  // Rebuild scratch space, kept so that rebuilds do not allocate.
  std::vector<std::uint64_t> scratch_;
  std::vector<std::uint32_t> bucket_starts_;
  std::vector<std::uint32_t> bucket_fill_;

  void sort_points();
};

// The 64-bit hash of a sticky key (FNV-1a, then a finalizer that spreads its bits). For
// source-hash pass the client's IP address without the port (format_ip in
// protocol/proxy_protocol.h), so every connection of one client maps to the same backend.
std::uint64_t hash_key(std::string_view key);

}  // namespace wslb::worker
