#include "supervisor/backend_rows.h"

#include <cstring>
#include <vector>

#include "shm/table_ops.h"

namespace wslb::supervisor {

namespace {
constexpr auto relaxed = std::memory_order_relaxed;

// Health starts over (up, as for a new backend) whenever the address behind a row changes.
void reset_health(shm::backend_row& row) {
  row.healthy = 1;
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
}  // namespace

bool apply_backends(shm::table& t, config& cfg, std::string& error) {
  const std::size_t high = t.header.backend_high_water.load();
  std::vector<bool> kept(shm::max_backends, false);
  for (auto& b : cfg.backends) {
    const std::string address = b.where.to_string();
    std::size_t row = shm::max_backends;
    for (std::size_t i = 0; i < high; ++i) {
      if (t.backends[i].state.load() != shm::backend_state::empty &&
          address == t.backends[i].address) {
        row = i;
        break;
      }
    }
    if (row == shm::max_backends) {
      for (std::size_t i = 0; i < shm::max_backends; ++i) {
        if (t.backends[i].state.load() == shm::backend_state::empty && !kept[i]) {
          row = i;
          break;
        }
      }
      if (row == shm::max_backends) {
        error = "no free backend row (at most " + std::to_string(shm::max_backends) +
                " backends, counting removed ones still draining)";
        return false;
      }
      reset_row(t.backends[row]);
      shm::copy_fixed(t.backends[row].address, shm::address_chars, address);
      write_sockaddr(t.backends[row], b.where);
    } else if (!same_sockaddr(t.backends[row], b.where)) {
      // Same name, new address (a host name resolved again on reload): connections already
      // open stay where they are; new ones and the health checks go to the new address.
      reset_health(t.backends[row]);
      write_sockaddr(t.backends[row], b.where);
    }
    kept[row] = true;
    b.row = row;
    auto& r = t.backends[row];
    r.weight.store(b.weight, relaxed);
    r.state.store(shm::backend_state::active, std::memory_order_release);
    r.config_epoch.fetch_add(1, relaxed);
    if (row + 1 > t.header.backend_high_water.load()) t.header.backend_high_water = static_cast<std::uint32_t>(row + 1);
  }
  for (std::size_t i = 0; i < t.header.backend_high_water.load(); ++i) {
    if (!kept[i] && t.backends[i].state.load() == shm::backend_state::active) {
      t.backends[i].state.store(shm::backend_state::removed, std::memory_order_release);
      t.backends[i].config_epoch.fetch_add(1, relaxed);
    }
  }
  return true;
}

void release_drained_backends(shm::table& t) {
  for (std::size_t i = 0; i < t.header.backend_high_water.load(); ++i) {
    auto& r = t.backends[i];
    if (r.state.load() == shm::backend_state::removed && shm::sum_active(t, i) == 0) {
      r.state.store(shm::backend_state::empty, std::memory_order_release);
      r.config_epoch.fetch_add(1, relaxed);
    }
  }
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

}  // namespace wslb::supervisor
