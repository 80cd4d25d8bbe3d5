#include "worker/worker_context.h"

#include <cstdio>

#include "protocol/http_request.h"
#include "worker/row_counters.h"

namespace wslb::worker {

worker_context::worker_context(const config& c, shm::table& t, std::size_t slot_index,
                               std::uint32_t gen)
    : cfg(c),
      table(t),
      row(t.workers[slot_index]),
      slot(slot_index),
      generation(gen),
      picker(c.backends, c.balance.mode),
      affinity(c.sticky_cookie, c.backends) {
  std::snprintf(who, sizeof who, "worker %zu", slot_index);
  protocol::allow_header_size(c.max_header_size);
  backend_names.reserve(c.backends.size());
  for (std::size_t i = 0; i < c.backends.size(); ++i) {
    backend_names.push_back(c.backends[i].where.to_string());
    seen_healthy[i] = 1;
  }
}

void flush_byte_counters(worker_context& ctx, std::size_t index) {
  auto& pending = ctx.unflushed[index];
  if (pending.in == 0 && pending.out == 0) return;
  shm::backend_counters& c = ctx.row.backends[ctx.cfg.backends[index].row];
  counter_add(c.bytes_in, pending.in);
  counter_add(c.bytes_out, pending.out);
  pending = {};
}

void flush_byte_counters(worker_context& ctx) {
  for (std::size_t i = 0; i < ctx.cfg.backends.size(); ++i) flush_byte_counters(ctx, i);
}

}  // namespace wslb::worker
