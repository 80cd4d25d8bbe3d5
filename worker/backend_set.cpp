#include "worker/backend_set.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <string_view>

#include "common/log.h"
#include "shm/table_ops.h"
#include "tls/client_context.h"
#include "worker/front_state.h"
#include "worker/session.h"
#include "worker/worker_context.h"

namespace wslb::worker {

namespace {

constexpr auto relaxed = std::memory_order_relaxed;

bool has(std::uint64_t set, std::size_t i) { return (set >> i) & 1u; }

// A backend as the master wrote it into `row`: its HOST:PORT text as configured, the address
// it resolved to (the worker never asks a resolver), its weight, maxconn and slow start.
backend_config backend_from_row(const shm::backend_row& row, std::size_t index) {
  backend_config b;
  const std::string_view text = shm::address_of(row);
  const std::size_t colon = text.rfind(':');
  std::string_view host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  b.where.host = std::string(host);
  if (colon != std::string_view::npos) {
    std::from_chars(text.data() + colon + 1, text.data() + text.size(), b.where.port);
  }
  const std::size_t len =
      std::min<std::size_t>(row.sockaddr_len.load(relaxed), sizeof row.sockaddr_bytes);
  std::memcpy(&b.where.addr, row.sockaddr_bytes, len);
  b.where.addr_len = static_cast<socklen_t>(len);
  b.weight = std::max<std::uint32_t>(row.weight.load(relaxed), 1);
  b.maxconn = row.maxconn.load(relaxed);
  b.slowstart_ms = row.slowstart_ms.load(relaxed);
  b.tls.enabled = row.tls.load(relaxed) != 0;
  b.tls.sni = std::string(shm::fixed_text(row.tls_sni, sizeof row.tls_sni));
  b.tls.ca_file = std::string(shm::fixed_text(row.tls_ca, sizeof row.tls_ca));
  b.row = index;
  return b;
}

// Indices a session of this worker still refers to: its backend, or the backend its affinity
// cookie named for the request under way.
std::uint64_t held_indices(const worker_context& ctx) {
  std::uint64_t held = 0;
  for (const session* s = ctx.sessions; s != nullptr; s = s->next) {
    if (s->backend_index < shm::max_backends) held |= std::uint64_t{1} << s->backend_index;
    if (s->hs != nullptr && s->hs->preferred < shm::max_backends) {
      held |= std::uint64_t{1} << s->hs->preferred;
    }
  }
  return held;
}

}  // namespace

backend_set_change compare_with_table(const shm::table& t,
                                      const std::vector<backend_config>& backends,
                                      std::uint64_t retired, bool adopt_rows) {
  backend_set_change change;
  std::uint64_t rows_held = 0;  // rows a kept entry stands for
  for (std::size_t i = 0; i < backends.size(); ++i) {
    if (has(retired, i)) continue;
    const backend_config& b = backends[i];
    const shm::backend_row& row = t.backends[b.row];
    // A removed row still holds its backend (its connections drain); a freed one, or one
    // given to another backend, does not.
    if (row.state.load(std::memory_order_acquire) == shm::backend_state::empty ||
        shm::address_of(row) != b.where.to_string()) {
      change.retire |= std::uint64_t{1} << i;
    } else {
      rows_held |= std::uint64_t{1} << b.row;
    }
  }
  if (!adopt_rows) return change;
  for (std::size_t r = 0; r < shm::backend_rows_in_use(t); ++r) {
    if (has(rows_held, r) ||
        t.backends[r].state.load(std::memory_order_acquire) != shm::backend_state::active) {
      continue;
    }
    change.adopt.push_back(backend_from_row(t.backends[r], r));
  }
  return change;
}

std::size_t index_for_adopted(std::size_t size, std::uint64_t retired, std::uint64_t held) {
  for (std::size_t i = 0; i < size; ++i) {
    if (has(retired, i) && !has(held, i)) return i;
  }
  return size < shm::max_backends ? size : shm::max_backends;
}

void follow_backend_set(worker_context& ctx) {
  backend_follower& f = ctx.backend_set;
  const std::uint32_t epoch = ctx.table.header.backend_epoch.load(std::memory_order_acquire);
  const std::uint32_t serving = ctx.table.header.current_generation.load(relaxed);
  if (epoch == f.epoch_seen && serving == f.generation_seen) return;
  f.epoch_seen = epoch;
  f.generation_seen = serving;
  backend_set_change change =
      compare_with_table(ctx.table, ctx.cfg.backends, f.retired, serving == ctx.generation);
  if (change.retire == 0 && change.adopt.empty()) return;
  f.retired |= change.retire;
  for (std::size_t i = 0; i < ctx.cfg.backends.size(); ++i) {
    if (has(change.retire, i)) {
      log_line(ctx.who, "backend %s is gone from the table: no longer picked",
               ctx.backend_names[i].c_str());
    }
  }
  std::uint64_t held = change.adopt.empty() ? 0 : held_indices(ctx);
  for (backend_config& b : change.adopt) {
    const std::size_t index = index_for_adopted(ctx.cfg.backends.size(), f.retired, held);
    const std::string name = b.where.to_string();
    // Its CA file was read by the master when it was added; this process needs its own
    // context (or shares one of a backend with the same CA).
    if (const std::string error = tls::load_backend_tls(ctx.cfg, b); !error.empty()) {
      log_line(ctx.who, "backend %s: %s; its connections will fail", name.c_str(), error.c_str());
    }
    if (index == shm::max_backends) {
      log_line(ctx.who, "cannot take backend %s: %zu backends are still referred to here",
               name.c_str(), shm::max_backends);
      continue;
    }
    if (index == ctx.cfg.backends.size()) {
      ctx.cfg.backends.push_back(b);
      ctx.backend_names.push_back(name);
    } else {
      ctx.cfg.backends[index] = b;
      ctx.backend_names[index] = name;
    }
    f.retired &= ~(std::uint64_t{1} << index);
    held |= std::uint64_t{1} << index;
    // What this worker kept about the index's previous backend does not carry over.
    ctx.unflushed[index] = {};
    ctx.seen_healthy[index] = 1;
    ctx.failure_logged_ms[index] = 0;
    ctx.failures_unlogged[index] = 0;
    ctx.tls_failure_logged[index].clear();
    ctx.shedding.backends[index] = {};
    log_line(ctx.who, "backend %s added at run time (row %zu)", name.c_str(), b.row);
  }
  ctx.picker.set_backends(ctx.cfg.backends, f.retired);
  ctx.affinity = affinity_cookie(ctx.cfg.sticky_cookie, ctx.cfg.backends, f.retired);
}

}  // namespace wslb::worker
