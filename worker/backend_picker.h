// Choosing a backend for a new connection from the shared table. Pure: it reads the table
// (health, live counts of every worker row) and touches only the shared rotation counter, so
// the unit tests drive it on a plain table image. Called by a worker for each new connection
// and again, with the failed backends excluded, after a failed connect.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/config.h"
#include "shm/layout.h"
#include "worker/sticky_ring.h"

namespace wslb::worker {

// Set of backends (bit i = index i of the worker's configured backends) a connection has
// already tried; each backend is tried at most once per connection.
using tried_set = std::uint64_t;

inline constexpr std::size_t no_backend = static_cast<std::size_t>(-1);

// True when the backend of `row` may get new connections now: its row active (or staged: a
// generation's new backend before the reload commits), healthy, not being evacuated, and
// ready as far as the operator is concerned. The one rule for the picker and the shedder's
// ring (serving_ring.h).
bool takes_new_connections(const shm::backend_row& row);

// The weight the backend of `row` has on the sticky ring: the row's (the configured one, or
// the operator's `wslb backend weight`), or `configured` for a row without one (a test's
// table). No slow-start ramp: keys are placed by the ring, not by load.
std::uint32_t ring_weight(const shm::backend_row& row, std::uint32_t configured);

class backend_picker {
 public:
  // `backends` is the worker's configuration (their `row` indexes the table); `mode` its
  // balancing mode. At most shm::max_backends backends.
  backend_picker(const std::vector<backend_config>& backends, balance_mode mode);

  // The worker's backends changed at run time (worker/backend_set.h): the entries are made
  // again from `backends`, indices unchanged; those in `retired` (bit i = index i) are never
  // picked and leave the sticky ring.
  void set_backends(const std::vector<backend_config>& backends, tried_set retired);

  // Picks among the configured backends whose table row is `active` and `healthy` and that
  // are not in `tried`. Returns an index into the configured backends, or no_backend.
  //   least-conn:  fewest live connections summed over ALL worker rows (every generation)
  //                plus the other cluster nodes' last-known counts (backend_row::cluster_active),
  //                weights compared crosswise (a.active * b.weight < b.active * a.weight);
  //                equal candidates take turns through header.round_robin_next.
  //   round-robin: weighted rotation over header.round_robin_next, shared by all workers:
  //                over any `sum of weights` consecutive turns each backend gets its weight.
  //   sticky modes: `sticky_key` (a hash of the client's key) is mapped on a consistent-hash
  //                ring of the healthy backends; without a key (or when the ring's choice was
  //                already tried) they fall back to least-conn.
  // Backends in their slow start (see admission.h) count with their ramped weight at `now_ms`
  // (unix ms) in least-conn and round-robin; `now_ms` < 0 leaves slow start out.
  std::size_t pick(shm::table& t, tried_set tried, std::optional<std::uint64_t> sticky_key,
                   std::int64_t now_ms = -1);

  bool sticky() const { return mode_ != balance_mode::least_conn && mode_ != balance_mode::round_robin; }

  // True when this backend may get new connections now (row active and healthy, not being
  // evacuated, and ready as far as the operator is concerned).
  bool eligible(const shm::table& t, std::size_t index) const;

 private:
  struct entry {
    std::size_t row;
    std::uint32_t weight;
    std::uint32_t slowstart_ms;
    std::string address;  // places the backend's points on the sticky ring
    bool retired = false;  // its row holds another backend now, or none
  };
  // The weight (in thousandths) backend `i` has now: the row's (the master changes it at run
  // time, `wslb backend weight`), its slow-start ramp applied.
  std::uint64_t weight_now(const shm::table& t, std::size_t i) const;
  std::size_t pick_least_conn(shm::table& t, tried_set tried) const;
  std::size_t pick_round_robin(shm::table& t, tried_set tried) const;
  std::int64_t now_ms_ = -1;  // of the pick under way
  std::size_t pick_sticky(const shm::table& t, tried_set tried, std::uint64_t key);

  std::vector<entry> backends_;
  balance_mode mode_;
  // The ring holds the backends that were eligible when it was built, with their weights then;
  // it is rebuilt when that set changes (a health transition or a removed row) or a weight
  // does, so only the keys of the backend that came, went or was reweighted move.
  sticky_ring ring_;
  std::uint64_t ring_members_ = 0;
  std::vector<std::uint32_t> ring_weights_;
  bool ring_built_ = false;
  std::vector<ring_member> ring_scratch_;
};

}  // namespace wslb::worker
