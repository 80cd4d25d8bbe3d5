#include "worker/backend_picker.h"

#include <numeric>

#include "shm/table_ops.h"
#include "worker/admission.h"
#include "shm/cluster_view.h"

namespace wslb::worker {

namespace {

constexpr auto relaxed = std::memory_order_relaxed;

bool in_set(tried_set set, std::size_t i) { return (set >> i) & 1u; }

// A step coprime with `w` near w * 0.618: walking positions p -> p * step mod w visits every
// position once per cycle, so each backend still gets exactly its weight per cycle, but a
// heavy backend's turns are spread through the cycle instead of coming in one block.
std::uint64_t scatter_step(std::uint64_t w) {
  if (w <= 2) return 1;
  std::uint64_t step = (w * 618 + 500) / 1000;
  while (std::gcd(step, w) != 1) ++step;
  return step;
}

}  // namespace

backend_picker::backend_picker(const std::vector<backend_config>& backends, balance_mode mode)
    : mode_(mode) {
  set_backends(backends, 0);
}

void backend_picker::set_backends(const std::vector<backend_config>& backends,
                                  tried_set retired) {
  backends_.clear();
  backends_.reserve(backends.size());
  for (std::size_t i = 0; i < backends.size(); ++i) {
    const backend_config& b = backends[i];
    backends_.push_back(entry{b.row, b.weight == 0 ? 1u : b.weight, b.slowstart_ms,
                              b.where.to_string(), in_set(retired, i)});
  }
  ring_built_ = false;
}

bool takes_new_connections(const shm::backend_row& row) {
  // A staged row is one a new generation brings: the master has not committed the reload
  // yet, but that generation's configuration has the backend.
  const shm::backend_state state = row.state.load(std::memory_order_acquire);
  return (state == shm::backend_state::active || state == shm::backend_state::staged) &&
         row.healthy.load(relaxed) == 1 && row.evacuate_end_ms.load(relaxed) == 0 &&
         row.admin.load(relaxed) == shm::admin_state::ready;
}

std::uint32_t ring_weight(const shm::backend_row& row, std::uint32_t configured) {
  const std::uint32_t weight = row.weight.load(relaxed);
  return weight != 0 ? weight : configured;
}

bool backend_picker::eligible(const shm::table& t, std::size_t index) const {
  return !backends_[index].retired && takes_new_connections(t.backends[backends_[index].row]);
}

std::uint64_t backend_picker::weight_now(const shm::table& t, std::size_t i) const {
  const entry& e = backends_[i];
  const std::uint32_t weight = ring_weight(t.backends[e.row], e.weight);
  if (now_ms_ < 0 || e.slowstart_ms == 0) return std::uint64_t{weight} * 1000;
  return ramped_weight_milli(weight, t.backends[e.row].up_since_ms.load(std::memory_order_acquire),
                             e.slowstart_ms, now_ms_);
}

std::size_t backend_picker::pick(shm::table& t, tried_set tried,
                                 std::optional<std::uint64_t> sticky_key, std::int64_t now_ms) {
  now_ms_ = now_ms;
  switch (mode_) {
    case balance_mode::round_robin:
      return pick_round_robin(t, tried);
    case balance_mode::least_conn:
      return pick_least_conn(t, tried);
    case balance_mode::source_hash:
    case balance_mode::header:
    case balance_mode::cookie:
    case balance_mode::query:
      if (sticky_key) {
        const std::size_t chosen = pick_sticky(t, tried, *sticky_key);
        if (chosen != no_backend) return chosen;
      }
      return pick_least_conn(t, tried);
  }
  return no_backend;
}

std::size_t backend_picker::pick_least_conn(shm::table& t, tried_set tried) const {
  std::size_t ties[shm::max_backends];
  std::size_t tie_count = 0;
  std::uint64_t best_active = 0;
  std::uint64_t best_weight = 1000;
  for (std::size_t i = 0; i < backends_.size(); ++i) {
    if (in_set(tried, i) || !eligible(t, i)) continue;
    // This node's exact count plus the other nodes' last-known ones (0 without --cluster).
    const std::uint64_t active = shm::tier_active(t, backends_[i].row);
    const std::uint64_t weight = weight_now(t, i);
    if (tie_count == 0) {
      ties[tie_count++] = i;
      best_active = active;
      best_weight = weight;
      continue;
    }
    // active/weight < best_active/best_weight, cross-multiplied (no division, as nginx does).
    const std::uint64_t lhs = active * best_weight;
    const std::uint64_t rhs = best_active * weight;
    if (lhs < rhs) {
      tie_count = 0;
      ties[tie_count++] = i;
      best_active = active;
      best_weight = weight;
    } else if (lhs == rhs) {
      ties[tie_count++] = i;
    }
  }
  if (tie_count == 0) return no_backend;
  if (tie_count == 1) return ties[0];
  // Equal backends take turns through the counter every worker shares, so that workers that
  // all see the same counts at once do not all pile onto the first one.
  const std::uint64_t turn = t.header.round_robin_next.fetch_add(1, relaxed);
  return ties[turn % tie_count];
}

std::size_t backend_picker::pick_round_robin(shm::table& t, tried_set tried) const {
  // Whole weights unless a backend is in its slow start (a weight that is not whole): then
  // thousandths, so the ramp shows
  // (the rotation's exact share per cycle of sum-of-weights turns holds again once it ends).
  std::uint64_t weights[shm::max_backends];
  std::uint64_t total_weight = 0;
  bool ramping = false;
  for (std::size_t i = 0; i < backends_.size(); ++i) {
    weights[i] = 0;
    if (in_set(tried, i) || !eligible(t, i)) continue;
    weights[i] = weight_now(t, i);
    ramping = ramping || weights[i] % 1000 != 0;
  }
  for (std::size_t i = 0; i < backends_.size(); ++i) {
    if (!ramping) weights[i] /= 1000;
    total_weight += weights[i];
  }
  if (total_weight == 0) return no_backend;
  const std::uint64_t turn = t.header.round_robin_next.fetch_add(1, relaxed);
  std::uint64_t position = ((turn % total_weight) * scatter_step(total_weight)) % total_weight;
  std::size_t last = no_backend;
  for (std::size_t i = 0; i < backends_.size(); ++i) {
    if (weights[i] == 0) continue;
    last = i;
    if (position < weights[i]) return i;
    position -= weights[i];
  }
  return last;
}

std::size_t backend_picker::pick_sticky(const shm::table& t, tried_set tried, std::uint64_t key) {
  std::uint64_t members = 0;
  for (std::size_t i = 0; i < backends_.size(); ++i) {
    if (eligible(t, i)) members |= std::uint64_t{1} << i;
  }
  if (members == 0) return no_backend;
  bool reweighted = ring_weights_.size() != backends_.size();
  ring_weights_.resize(backends_.size());
  for (std::size_t i = 0; i < backends_.size(); ++i) {
    const std::uint32_t w = ring_weight(t.backends[backends_[i].row], backends_[i].weight);
    reweighted = reweighted || w != ring_weights_[i];
    ring_weights_[i] = w;
  }
  if (!ring_built_ || members != ring_members_ || reweighted) {
    // Every configured backend is passed, healthy or not, so that a health change moves only
    // the keys of the backend that changed.
    ring_scratch_.clear();
    for (std::size_t i = 0; i < backends_.size(); ++i) {
      if (backends_[i].retired) continue;  // its row may be another entry's now
      ring_scratch_.push_back(
          ring_member{backends_[i].row, backends_[i].address, ring_weights_[i], in_set(members, i)});
    }
    ring_.rebuild(ring_scratch_);
    ring_members_ = members;
    ring_built_ = true;
  }
  const std::optional<std::size_t> row = ring_.lookup(key);
  if (!row) return no_backend;
  for (std::size_t i = 0; i < backends_.size(); ++i) {
    if (backends_[i].row == *row && !backends_[i].retired) {
      return in_set(tried, i) ? no_backend : i;
    }
  }
  return no_backend;
}

}  // namespace wslb::worker
