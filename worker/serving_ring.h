// Where the instance's current configuration sends a sticky key: the consistent-hash ring of
// the backends whose table rows are active (what the serving generation has), built from the
// table alone. Rebalancing in the hash modes sheds only connections whose key this ring maps
// to another backend; a worker of an older, draining generation holds most connections after
// a reload, and its own configuration does not know the backends the reload added, so its
// picker's ring cannot answer. Both rings place the same backends alike (address text, weight,
// eligibility: see backend_picker.h), so the serving generation agrees with the answer.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "shm/layout.h"
#include "worker/sticky_ring.h"

namespace wslb::worker {

class serving_ring {
 public:
  // The table row of the backend that `key_hash` maps to now, or nullopt when no active
  // backend takes new connections. Rebuilds the ring when the active rows, their health or
  // their weights changed since the last call. Called by a worker on its loop (shedding).
  std::optional<std::size_t> row_for(const shm::table& t, std::uint64_t key_hash);

 private:
  struct member_state {
    bool active = false;
    bool eligible = false;
    std::uint32_t weight = 0;
    bool operator==(const member_state&) const = default;
  };
  std::array<member_state, shm::max_backends> built_from_{};
  bool built_ = false;
  sticky_ring ring_;
  std::vector<ring_member> scratch_;
};

}  // namespace wslb::worker
