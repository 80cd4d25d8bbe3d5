// Reading and maintaining the table: column sums that every process needs, the master's
// clearing of a dead worker's row, and the seqlock around a backend's last error text.
#pragma once

#include <cstdint>
#include <string>
#include <span>
#include <string_view>

#include "shm/layout.h"

namespace wslb::shm {

// How many worker rows and backend rows can be in use: their high-water marks, bounded by the
// table's size (readers never trust a shared value as an index unchecked).
std::size_t worker_rows_in_use(const table& t);
std::size_t backend_rows_in_use(const table& t);

// Live connections to backend `b` summed over every worker row in use (all generations).
// Any process; lock-free, may be a moment stale, never negative.
std::uint64_t sum_active(const table& t, std::size_t b);

// Totals of backend `b`: the live rows plus what exited workers left in `retired_*`.
struct backend_totals {
  std::uint64_t active = 0, total = 0, bytes_in = 0, bytes_out = 0, failures = 0;
  std::uint64_t shed = 0, evacuated = 0;  // closes with cause rebalance / evacuate
};
backend_totals sum_backend(const table& t, std::size_t b);

// Closes of backend `b` with cause `rebalance`, including exited workers' (retired_shed).
std::uint64_t sum_shed(const table& t, std::size_t b);

// Clients waiting in the workers' maxconn queues now.
std::uint64_t sum_queued(const table& t);

// Error answers of `kind` (an error_kind index) summed over every worker row in use.
std::uint64_t sum_errors(const table& t, std::size_t kind);

// Tunnels handed over that no newer worker took in (it died with them in its socket queue),
// summed over live rows and exited workers. A handover in flight shows here for a moment.
std::uint64_t handover_lost(const table& t);

// A worker taking in a tunnel of backend row `b` from a predecessor table's worker (an upgrade
// to another layout): one less in backend_row::inherited_active, never below 0. Several
// workers may do it at once (compare-and-swap); 0 when the master has zeroed it meanwhile.
void inherited_take_one(table& t, std::size_t b);

// TLS handshake counts summed over every worker row in use (like errors[], a slot's counts
// outlive its worker: the next one continues from them), and the connections parked now.
struct tls_totals {
  std::uint64_t handshakes = 0, resumed = 0, failed = 0, abandoned = 0;
  std::uint64_t parked = 0;
};
tls_totals sum_tls(const table& t);

// Master only, after reaping the worker in `slot`: folds the row's totals into the backends'
// `retired_*` counters, then zeroes the row's counters (its live connections died with it).
// Leaves pid/state/generation/restarts to the caller.
void clear_worker_row(table& t, std::size_t slot);

// Health checker (and a worker marking a backend down): replaces the last error text.
void write_last_error(backend_row& row, std::string_view text);
// Any process: a consistent copy of the last error text (retries while a writer is active).
std::string read_last_error(const backend_row& row);

// A worker, into its own row: counts `value_us` in the bucket of `bounds` it falls in.
void observe(histogram& h, std::span<const std::uint64_t> bounds, std::uint64_t value_us);

// A histogram summed over every worker row in use: per-bucket counts and the sum.
struct histogram_sums {
  std::uint64_t buckets[histogram_buckets] = {};
  std::uint64_t sum_us = 0;
};
histogram_sums sum_histograms(const table& t, histogram worker_row::*which);
// Closes of `cause` (a close_cause index), summed over the worker rows in use.
std::uint64_t sum_closes(const table& t, std::size_t cause);
// Finished connections of backend `b` of `kind` (a connection_kind_index): the live rows plus
// what exited workers left.
std::uint64_t sum_kind(const table& t, std::size_t b, std::size_t kind);

// Backend `row`'s "HOST:PORT", never read past its field (whatever a torn or foreign table
// holds there). Any process.
std::string_view address_of(const backend_row& row);

// The text in a fixed char array of `capacity`, never read past it. Any process.
std::string_view fixed_text(const char* field, std::size_t capacity);

// Copies `text` into a fixed char array, truncating, always NUL-terminated.
void copy_fixed(char* dst, std::size_t capacity, std::string_view text);

}  // namespace wslb::shm
