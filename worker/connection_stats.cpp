#include "worker/connection_stats.h"

#include "shm/table_ops.h"
#include "worker/row_counters.h"

namespace wslb::worker {

namespace {

std::uint64_t now_ns() { return uv_hrtime(); }

std::uint64_t micros_since(std::uint64_t start_ns) {
  const std::uint64_t now = now_ns();
  return now > start_ns ? (now - start_ns) / 1000 : 0;
}

std::size_t kind_index(connection_kind k) {
  switch (k) {
    case connection_kind::websocket: return static_cast<std::size_t>(shm::connection_kind_index::websocket);
    case connection_kind::http: return static_cast<std::size_t>(shm::connection_kind_index::http);
    case connection_kind::tcp: return static_cast<std::size_t>(shm::connection_kind_index::tcp);
    case connection_kind::unknown: break;
  }
  return shm::connection_kinds;
}

}  // namespace

void note_accepted(session* s) { s->accepted_ns = now_ns(); }

void note_connect_started(session* s) { s->connect_started_ns = now_ns(); }

void note_connected(session* s) {
  if (s->connect_started_ns == 0) return;
  shm::observe(s->ctx().row.backend_connect, shm::latency_bounds_us,
               micros_since(s->connect_started_ns));
  s->connect_started_ns = 0;
}

void note_upgraded(session* s) {
  shm::observe(s->ctx().row.handshake, shm::latency_bounds_us, micros_since(s->accepted_ns));
}

void note_cause(session* s, shm::close_cause cause) {
  if (s->cause_noted) return;
  s->cause_noted = true;
  s->cause = cause;
}

void record_end(session* s) {
  if (s->handed_over) return;  // it lives on in a newer worker
  shm::worker_row& row = s->ctx().row;
  if (!s->cause_noted) {
    // Nobody said why: the peer that sent its FIN first ended it, else it broke.
    note_cause(s, (s->eof_mask & (1u << to_backend))  ? shm::close_cause::client
                  : (s->eof_mask & (1u << to_client)) ? shm::close_cause::backend
                                                      : shm::close_cause::error);
  }
  counter_add(row.closes[static_cast<std::size_t>(s->cause)], 1);
  const std::size_t kind = kind_index(s->kind);
  if (kind < shm::connection_kinds && s->backend_index != no_backend_index) {
    const std::size_t b = s->ctx().cfg.backends[s->backend_index].row;
    counter_add(row.backends[b].kinds[kind], 1);
  }
  shm::observe(row.lifetime, shm::lifetime_bounds_us, micros_since(s->accepted_ns));
}

}  // namespace wslb::worker
