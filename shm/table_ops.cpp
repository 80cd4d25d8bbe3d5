#include "shm/table_ops.h"

#include <algorithm>
#include <cstring>

namespace wslb::shm {

namespace {
constexpr auto relaxed = std::memory_order_relaxed;
}  // namespace

std::size_t worker_rows_in_use(const table& t) {
  return std::min<std::size_t>(t.header.slot_high_water.load(std::memory_order_acquire),
                               max_worker_slots);
}

std::size_t backend_rows_in_use(const table& t) {
  return std::min<std::size_t>(t.header.backend_high_water.load(std::memory_order_acquire),
                               max_backends);
}

std::uint64_t sum_errors(const table& t, std::size_t kind) {
  std::uint64_t sum = 0;
  const std::size_t n = worker_rows_in_use(t);
  for (std::size_t s = 0; s < n; ++s) sum += t.workers[s].errors[kind].load(relaxed);
  return sum;
}

tls_totals sum_tls(const table& t) {
  tls_totals out;
  const std::size_t n = worker_rows_in_use(t);
  for (std::size_t s = 0; s < n; ++s) {
    const worker_row& w = t.workers[s];
    out.handshakes += w.tls_handshakes.load(relaxed);
    out.resumed += w.tls_resumed.load(relaxed);
    out.failed += w.tls_failed.load(relaxed);
    out.abandoned += w.tls_abandoned.load(relaxed);
    out.parked += w.tls_parked.load(relaxed);
  }
  return out;
}

std::uint64_t sum_active(const table& t, std::size_t b) {
  std::uint64_t sum = 0;
  const std::size_t n = worker_rows_in_use(t);
  for (std::size_t s = 0; s < n; ++s) sum += t.workers[s].backends[b].active.load(relaxed);
  return sum;
}

std::uint64_t sum_shed(const table& t, std::size_t b) {
  std::uint64_t sum = t.backends[b].retired_shed.load(relaxed);
  const std::size_t n = worker_rows_in_use(t);
  for (std::size_t s = 0; s < n; ++s) sum += t.workers[s].backends[b].shed.load(relaxed);
  return sum;
}

std::uint64_t sum_queued(const table& t) {
  std::uint64_t sum = 0;
  const std::size_t n = worker_rows_in_use(t);
  for (std::size_t s = 0; s < n; ++s) sum += t.workers[s].queued.load(relaxed);
  return sum;
}

backend_totals sum_backend(const table& t, std::size_t b) {
  const backend_row& row = t.backends[b];
  backend_totals out;
  out.total = row.retired_total.load(relaxed);
  out.bytes_in = row.retired_bytes_in.load(relaxed);
  out.bytes_out = row.retired_bytes_out.load(relaxed);
  out.failures = row.retired_failures.load(relaxed);
  out.shed = row.retired_shed.load(relaxed);
  out.evacuated = row.retired_evacuated.load(relaxed);
  const std::size_t n = worker_rows_in_use(t);
  for (std::size_t s = 0; s < n; ++s) {
    const backend_counters& c = t.workers[s].backends[b];
    out.active += c.active.load(relaxed);
    out.total += c.total.load(relaxed);
    out.bytes_in += c.bytes_in.load(relaxed);
    out.bytes_out += c.bytes_out.load(relaxed);
    out.failures += c.failures.load(relaxed);
    out.shed += c.shed.load(relaxed);
    out.evacuated += c.evacuated.load(relaxed);
  }
  return out;
}

void clear_worker_row(table& t, std::size_t slot) {
  worker_row& w = t.workers[slot];
  for (std::size_t b = 0; b < max_backends; ++b) {
    backend_counters& c = w.backends[b];
    backend_row& row = t.backends[b];
    // The master is the only writer of retired_*; fetch_add keeps a concurrent reader's sum
    // from seeing the totals twice for longer than the two stores below take.
    row.retired_total.fetch_add(c.total.exchange(0, relaxed), relaxed);
    row.retired_bytes_in.fetch_add(c.bytes_in.exchange(0, relaxed), relaxed);
    row.retired_bytes_out.fetch_add(c.bytes_out.exchange(0, relaxed), relaxed);
    row.retired_failures.fetch_add(c.failures.exchange(0, relaxed), relaxed);
    row.retired_shed.fetch_add(c.shed.exchange(0, relaxed), relaxed);
    row.retired_evacuated.fetch_add(c.evacuated.exchange(0, relaxed), relaxed);
    for (std::size_t k = 0; k < connection_kinds; ++k) {
      row.retired_kinds[k].fetch_add(c.kinds[k].exchange(0, relaxed), relaxed);
    }
    c.active.store(0, relaxed);
  }
  w.connections.store(0, relaxed);
  w.accepted.store(0, relaxed);
  for (source_count& c : w.sources) {
    c.count.store(0, relaxed);
    c.key.store(0, relaxed);
  }
  w.reserving.store(0);  // a reservation the dead worker held is released with it
  w.queued.store(0, relaxed);
  w.tls_parked.store(0, relaxed);
  t.header.retired_handed_over.fetch_add(w.handed_over.exchange(0, relaxed), relaxed);
  t.header.retired_handed_in.fetch_add(w.handed_in.exchange(0, relaxed), relaxed);
  // errors[], closes[], the histograms and the tls_* counts stay: they count per instance, and
  // the slot's next worker continues from them.
  w.drain_deadline_ms.store(0, relaxed);
}

std::uint64_t handover_lost(const table& t) {
  std::uint64_t over = t.header.retired_handed_over.load(relaxed);
  std::uint64_t in = t.header.retired_handed_in.load(relaxed);
  const std::size_t rows = worker_rows_in_use(t);
  for (std::size_t i = 0; i < rows; ++i) {
    over += t.workers[i].handed_over.load(relaxed);
    in += t.workers[i].handed_in.load(relaxed);
  }
  return over > in ? over - in : 0;
}

void inherited_take_one(table& t, std::size_t b) {
  std::atomic<std::uint64_t>& n = t.backends[b].inherited_active;
  std::uint64_t seen = n.load(relaxed);
  while (seen > 0 && !n.compare_exchange_weak(seen, seen - 1, relaxed)) {
  }
}

void observe(histogram& h, std::span<const std::uint64_t> bounds, std::uint64_t value_us) {
  std::size_t i = 0;
  while (i < bounds.size() && value_us > bounds[i]) ++i;
  // One writer per row: a relaxed load and store, as for every counter of the row.
  h.buckets[i].store(h.buckets[i].load(relaxed) + 1, relaxed);
  h.sum_us.store(h.sum_us.load(relaxed) + value_us, relaxed);
}

histogram_sums sum_histograms(const table& t, histogram worker_row::*which) {
  histogram_sums out;
  const std::size_t n = worker_rows_in_use(t);
  for (std::size_t s = 0; s < n; ++s) {
    const histogram& h = t.workers[s].*which;
    for (std::size_t i = 0; i < histogram_buckets; ++i) out.buckets[i] += h.buckets[i].load(relaxed);
    out.sum_us += h.sum_us.load(relaxed);
  }
  return out;
}

std::uint64_t sum_closes(const table& t, std::size_t cause) {
  std::uint64_t sum = 0;
  const std::size_t n = worker_rows_in_use(t);
  for (std::size_t s = 0; s < n; ++s) sum += t.workers[s].closes[cause].load(relaxed);
  return sum;
}

std::uint64_t sum_kind(const table& t, std::size_t b, std::size_t kind) {
  std::uint64_t sum = t.backends[b].retired_kinds[kind].load(relaxed);
  const std::size_t n = worker_rows_in_use(t);
  for (std::size_t s = 0; s < n; ++s) sum += t.workers[s].backends[b].kinds[kind].load(relaxed);
  return sum;
}

std::string_view address_of(const backend_row& row) { return fixed_text(row.address, address_chars); }

std::string_view fixed_text(const char* field, std::size_t capacity) {
  return {field, strnlen(field, capacity)};
}

void copy_fixed(char* dst, std::size_t capacity, std::string_view text) {
  const std::size_t n = std::min(text.size(), capacity - 1);
  std::memcpy(dst, text.data(), n);
  dst[n] = '\0';
}

void write_last_error(backend_row& row, std::string_view text) {
  // Two writers can meet here (the checker and a worker marking the backend down): claim the
  // text by moving the sequence from even to odd; a loser waits for the winner, which only
  // copies under 100 bytes. Bounded: a writer killed mid-copy must not wedge the others.
  std::uint32_t seq = row.last_error_seq.load(relaxed);
  for (int spin = 0; spin < 100000; ++spin) {
    if ((seq & 1u) == 0 &&
        row.last_error_seq.compare_exchange_weak(seq, seq + 1, std::memory_order_acquire,
                                                 relaxed)) {
      break;
    }
    seq = row.last_error_seq.load(relaxed);
    if (spin == 99999) {
      seq &= ~1u;  // the holder died while writing: take over from its odd value
      row.last_error_seq.store(seq + 1, relaxed);
    }
  }
  std::atomic_thread_fence(std::memory_order_release);
  copy_fixed(row.last_error, error_chars, text);
  row.last_error_seq.store(seq + 2, std::memory_order_release);
}

std::string read_last_error(const backend_row& row) {
  char copy[error_chars];
  for (int attempt = 0; attempt < 100; ++attempt) {
    const std::uint32_t before = row.last_error_seq.load(std::memory_order_acquire);
    if (before & 1u) continue;
    std::memcpy(copy, row.last_error, error_chars);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (row.last_error_seq.load(relaxed) == before) {
      copy[error_chars - 1] = '\0';
      return copy;
    }
  }
  return "(being updated)";
}

}  // namespace wslb::shm
