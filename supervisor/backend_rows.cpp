#include "supervisor/backend_rows.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

#include "common/log.h"
#include "shm/table_ops.h"

namespace wslb::supervisor {

namespace {
constexpr auto relaxed = std::memory_order_relaxed;

// Health starts over (up, as for a new backend) whenever the address behind a row changes.
void reset_health(shm::backend_row& row) {
  row.healthy = 1;
  row.up_since_ms = unix_ms();  // a new backend (or address) starts its slow start now
  row.check_streak = 0;
  row.last_result = shm::check_result::none;
  row.last_check_ms = 0;
  row.passive_fail_streak = 0;
  row.transitions = 0;
  shm::write_last_error(row, "");
}

void reset_row(shm::backend_row& row) {
  row.retired_total = 0;
  row.retired_bytes_in = 0;
  row.retired_bytes_out = 0;
  row.retired_failures = 0;
  row.retired_shed = 0;
  row.retired_evacuated = 0;
  for (auto& k : row.retired_kinds) k = 0;
  row.evacuate_start_ms = 0;
  row.evacuate_end_ms = 0;
  row.rebalance_target = 0;
  row.rebalance_surplus = 0;
  row.rebalance_shed_base = 0;
  row.shed_rate_milli = 0;
  reset_health(row);
}

bool same_sockaddr(const shm::backend_row& row, const endpoint& where) {
  return row.sockaddr_len.load(relaxed) == where.addr_len &&
         std::memcmp(row.sockaddr_bytes, &where.addr, where.addr_len) == 0;
}

// The checker copies these when it sees config_epoch change, which the caller bumps after.
void write_sockaddr(shm::backend_row& row, const endpoint& where) {
  std::memcpy(row.sockaddr_bytes, &where.addr,
              std::min<std::size_t>(where.addr_len, sizeof row.sockaddr_bytes));
  row.sockaddr_len.store(where.addr_len, relaxed);
}

// TLS towards the backend, as the checker and `status` read it. True when it changed.
bool write_tls(shm::backend_row& row, const backend_config& b) {
  const bool changed = (row.tls.load(relaxed) != 0) != b.tls.enabled ||
                       b.tls.sni != row.tls_sni || b.tls.ca_file != row.tls_ca;
  shm::copy_fixed(row.tls_sni, sizeof row.tls_sni, b.tls.sni);
  shm::copy_fixed(row.tls_ca, sizeof row.tls_ca, b.tls.ca_file);
  row.tls.store(b.tls.enabled ? 1 : 0, relaxed);
  return changed;
}

// Workers that follow the table at run time (worker/backend_set.h) look at the rows again.
void announce_rows_changed(shm::table& t) {
  t.header.backend_epoch.fetch_add(1, std::memory_order_release);
}

void raise_high_water(shm::table& t, std::size_t row) {
  if (row + 1 > t.header.backend_high_water.load()) {
    t.header.backend_high_water = static_cast<std::uint32_t>(row + 1);
  }
}

// The row holding backend `address` (active, removed or staged), or max_backends.
std::size_t row_of(const shm::table& t, const std::string& address) {
  const std::size_t high = t.header.backend_high_water.load();
  for (std::size_t i = 0; i < high; ++i) {
    if (t.backends[i].state.load() != shm::backend_state::empty &&
        address == t.backends[i].address) {
      return i;
    }
  }
  return shm::max_backends;
}
}  // namespace

std::string backend_rows_change::prepare(shm::table& t, config& next) {
  staged_.clear();
  high_water_before_ = t.header.backend_high_water.load();
  // Rows a backend of `next` will take, so two new backends never pick the same free row.
  std::array<bool, shm::max_backends> taken{};
  for (auto& b : next.backends) {
    b.row = row_of(t, b.where.to_string());
    if (b.row != shm::max_backends) taken[b.row] = true;
  }
  std::size_t free_row = 0;
  for (auto& b : next.backends) {
    if (b.row != shm::max_backends) continue;
    while (free_row < shm::max_backends &&
           (taken[free_row] || t.backends[free_row].state.load() != shm::backend_state::empty)) {
      ++free_row;
    }
    if (free_row == shm::max_backends) {
      roll_back(t);
      return "no free backend row (at most " + std::to_string(shm::max_backends) +
             " backends, counting removed ones still draining)";
    }
    b.row = free_row;
    taken[free_row] = true;
    staged_.push_back(free_row);
  }
  // Only now that every backend has a row is anything written: the staged rows, which no
  // worker of the serving generation has in its configuration. A backend coming back while its
  // `removed` row still drains is staged too: only draining workers, which pick nothing, have it.
  revived_.clear();
  for (const auto& b : next.backends) {
    if (t.backends[b.row].state.load() == shm::backend_state::removed) {
      revived_.push_back(b.row);
      t.backends[b.row].state.store(shm::backend_state::staged, std::memory_order_release);
    }
  }
  for (const auto& b : next.backends) {
    if (std::find(staged_.begin(), staged_.end(), b.row) == staged_.end()) continue;
    auto& r = t.backends[b.row];
    reset_row(r);
    shm::copy_fixed(r.address, shm::address_chars, b.where.to_string());
    write_sockaddr(r, b.where);
    write_tls(r, b);
    r.weight.store(b.weight, relaxed);
    r.maxconn.store(b.maxconn, relaxed);
    r.slowstart_ms.store(b.slowstart_ms, relaxed);
    r.state.store(shm::backend_state::staged, std::memory_order_release);
    raise_high_water(t, b.row);
  }
  return {};
}

void backend_rows_change::commit(shm::table& t, const config& next) {
  std::array<bool, shm::max_backends> kept{};
  for (std::size_t row : revived_) {
    // A backend that comes back is no longer being emptied (`backend remove --drain`).
    t.backends[row].evacuate_end_ms.store(0, relaxed);
    t.backends[row].evacuate_start_ms.store(0, relaxed);
  }
  for (const auto& b : next.backends) {
    auto& r = t.backends[b.row];
    if (!same_sockaddr(r, b.where)) {
      // Same name, new address (a host name resolved again on reload): connections already
      // open stay where they are; new ones and the health checks go to the new address.
      reset_health(r);
      write_sockaddr(r, b.where);
    }
    // TLS turned on or off, another name or CA: the checks start over with it.
    if (write_tls(r, b)) reset_health(r);
    kept[b.row] = true;
    r.weight.store(b.weight, relaxed);
    r.maxconn.store(b.maxconn, relaxed);
    r.slowstart_ms.store(b.slowstart_ms, relaxed);
    r.state.store(shm::backend_state::active, std::memory_order_release);
    r.config_epoch.fetch_add(1, relaxed);
    raise_high_water(t, b.row);
  }
  revived_.clear();
  for (std::size_t i = 0; i < t.header.backend_high_water.load(); ++i) {
    if (!kept[i] && t.backends[i].state.load() == shm::backend_state::active) {
      t.backends[i].state.store(shm::backend_state::removed, std::memory_order_release);
      t.backends[i].config_epoch.fetch_add(1, relaxed);
    }
  }
  staged_.clear();
  announce_rows_changed(t);
}

void backend_rows_change::roll_back(shm::table& t) {
  for (std::size_t row : staged_) {
    if (t.backends[row].state.load() == shm::backend_state::staged) {
      t.backends[row].state.store(shm::backend_state::empty, std::memory_order_release);
    }
  }
  for (std::size_t row : revived_) {
    t.backends[row].state.store(shm::backend_state::removed, std::memory_order_release);
  }
  // Only staged rows raised it, and they are empty again: readers scan no further than before.
  if (!staged_.empty()) t.header.backend_high_water = high_water_before_;
  staged_.clear();
  revived_.clear();
}

bool apply_backends(shm::table& t, config& cfg, std::string& error) {
  backend_rows_change change;
  error = change.prepare(t, cfg);
  if (!error.empty()) return false;
  change.commit(t, cfg);
  // Backends present when the instance starts are not ramped: nothing is established yet that
  // a newcomer would have to catch up with.
  for (const auto& b : cfg.backends) t.backends[b.row].up_since_ms.store(0, relaxed);
  return true;
}

void release_drained_backends(shm::table& t) {
  bool released = false;
  for (std::size_t i = 0; i < t.header.backend_high_water.load(); ++i) {
    auto& r = t.backends[i];
    if (r.state.load() == shm::backend_state::removed && shm::sum_active(t, i) == 0) {
      r.state.store(shm::backend_state::empty, std::memory_order_release);
      r.config_epoch.fetch_add(1, relaxed);
      released = true;
    }
  }
  if (released) announce_rows_changed(t);
}

void apply_check_settings(shm::table& t, const check_config& check) {
  auto& c = t.checker;
  c.kind.store(static_cast<std::uint32_t>(check.kind), relaxed);
  c.interval_ms.store(check.interval_ms, relaxed);
  c.timeout_ms.store(check.timeout_ms, relaxed);
  c.rise.store(check.rise, relaxed);
  c.fall.store(check.fall, relaxed);
  shm::copy_fixed(c.path, sizeof c.path, check.path);
  c.config_epoch.fetch_add(1, std::memory_order_release);
}

std::string backend_changes(const config& before, const config& after) {
  std::array<const backend_config*, shm::max_backends> old_at{};
  for (const auto& b : before.backends) old_at[b.row] = &b;
  std::string summary;
  for (const auto& b : after.backends) {
    const backend_config* old = std::exchange(old_at[b.row], nullptr);
    const std::string name = b.where.to_string();
    if (old == nullptr) {
      summary += " +" + name;
      continue;
    }
    if (old->weight != b.weight) {
      summary += " ~" + name + " weight " + std::to_string(old->weight) + "->" +
                 std::to_string(b.weight);
    }
    if (!old->where.same_address(b.where)) {
      summary += " ~" + name + " address " + old->where.address_text() + "->" +
                 b.where.address_text();
    }
  }
  for (const backend_config* old : old_at) {
    if (old != nullptr) summary += " -" + old->where.to_string();
  }
  return summary;
}

}  // namespace wslb::supervisor
