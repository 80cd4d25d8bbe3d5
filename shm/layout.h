// The shared-memory table: the one truth that the master, the workers, the health checker,
// the CLI and the tests share. Plain types and constants only; this header depends on nothing
// but the standard library.
//
// Rules (see STYLE.md): no pointers, fixed arrays and indices; every field is an atomic or is
// written once before any other process attaches; no lock a crashed process could leave held.
// Each worker writes only its own row; the master clears a dead worker's row after folding its
// totals into the backend's `retired` counters, so totals survive and live counts never leak.
// Bump `layout_version` on ANY change to this file.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace wslb::shm {

inline constexpr std::uint64_t table_magic = 0x314C4254424C5357ULL;  // "WSLBTBL1" little-endian
#ifndef WSLB_NEXT_LAYOUT
inline constexpr std::uint32_t layout_version = 15;
#else
// Only the test build of the next layout (tests/next_layout): a real binary whose table differs
// from this one's (another version, fields moved by next_layout_field below), to upgrade to
// and back from. Never shipped.
inline constexpr std::uint32_t layout_version = 15 + 1000;
#endif

inline constexpr std::size_t max_backends = 64;
inline constexpr std::size_t max_worker_slots = 128;  // several generations may drain at once
inline constexpr std::size_t address_chars = 64;      // "HOST:PORT", NUL-terminated
inline constexpr std::size_t name_chars = 64;
inline constexpr std::size_t error_chars = 96;
inline constexpr std::size_t tls_ca_chars = 256;       // a backend's ca= path, NUL-terminated
inline constexpr std::size_t max_certificates = 16;  // --tls-cert/--tls-key pairs
inline constexpr std::size_t subject_chars = 160;
inline constexpr std::size_t key_kind_chars = 24;     // "ECDSA prime256v1", "RSA 2048"
inline constexpr std::size_t max_cluster_peers = 32; // other nodes of a tier shown and counted
inline constexpr std::size_t version_chars = 24;      // "0.1.0"
inline constexpr std::size_t build_id_chars = 48;     // hex of the GNU build id (40 for SHA-1)

// Lifecycle of a worker slot. The master owns this field.
enum class worker_state : std::uint32_t {
  empty = 0,     // slot unused
  starting = 1,  // forked, not yet accepting
  running = 2,   // accepting and relaying
  draining = 3,  // stopped accepting, relaying what it has until the drain deadline
  backoff = 4,   // died right after start; next attempt at `backoff_until_ms`
  failed = 5,    // exited with the fatal-configuration code; not respawned
  // A worker of the predecessor's table, after an upgrade to another layout: shown (and
  // trusted as a handover sender) until the predecessor master is gone. It counts in its own
  // table, not in this row.
  predecessor = 6,
};

// Lifecycle of a backend row. The master owns this field.
enum class backend_state : std::uint32_t {
  empty = 0,     // row unused
  active = 1,    // in the current configuration: gets new connections (if healthy)
  removed = 2,   // removed by a reload: no new connections, existing ones drain
  staged = 3,    // added by a reload not yet committed: only the new generation's workers,
                 // which have it in their configuration, may pick it; freed on roll-back
};

// The operator's state of a backend (`wslb backend drain|ready|maint`), apart from its health.
// The master owns this field.
enum class admin_state : std::uint32_t {
  ready = 0,  // gets new connections when healthy
  drain = 1,  // no new connections, sticky or not; established ones stay
  maint = 2,  // drained, and its health checks paused
};

enum class check_result : std::uint32_t { none = 0, ok = 1, failed = 2 };

// Kinds of client-facing error answers counted by the workers (issue: clean errors).
enum class error_kind : std::uint32_t {
  bad_request_400 = 0,
  request_timeout_408,
  upgrade_required_426,
  header_too_large_431,
  bad_gateway_502,
  no_backend_503,
  gateway_timeout_504,
  no_backend_tcp_close,  // raw TCP client closed because no backend was healthy
  connection_limit,      // over --max-connections: 503 (http) or closed at once (tcp)
  source_limit,          // over --max-connections-per-source: 503 (http) or closed (tcp)
  queue_timeout_503,     // waited --queue-timeout while every backend was at its maxconn
  queue_timeout_tcp_close,  // the same in tcp mode: closed
  count_
};
inline constexpr std::size_t error_kinds = static_cast<std::size_t>(error_kind::count_);

// What a connection turned out to be, counted per backend when it ends.
enum class connection_kind_index : std::uint32_t { websocket = 0, http, tcp, count_ };
inline constexpr std::size_t connection_kinds =
    static_cast<std::size_t>(connection_kind_index::count_);

// Why a connection ended, counted when it does (wslb_closes_total{cause}). `rebalance` and
// `evacuate` are counted per backend (backend_counters) by the load shaping.
enum class close_cause : std::uint32_t {
  client = 0, backend, drain, timeout, error,
  rebalance,  // shed by a rebalance plan (worker/shedding.h)
  evacuate,   // closed by `backend evacuate`
  count_
};
inline constexpr std::size_t close_causes = static_cast<std::size_t>(close_cause::count_);
// Their names in metrics labels and the access log, by close_cause.
inline constexpr const char* close_cause_names[close_causes] = {
    "client", "backend", "drain", "timeout", "error", "rebalance", "evacuate"};

// Histogram bucket bounds in microseconds (upper bounds, inclusive; one more bucket for what
// is above the last). Accept to 101 and backend connects: 0.5 ms to 10 s; whole connections:
// 1 s to 7 days (WebSockets live for hours: an hour is not the end of the scale).
inline constexpr std::uint64_t latency_bounds_us[] = {
    500, 1'000, 2'500, 5'000, 10'000, 25'000, 50'000, 100'000, 250'000, 500'000,
    1'000'000, 2'500'000, 5'000'000, 10'000'000};
inline constexpr std::uint64_t lifetime_bounds_us[] = {
    1'000'000, 5'000'000, 15'000'000, 60'000'000, 300'000'000, 900'000'000,
    3'600'000'000, 14'400'000'000, 43'200'000'000, 86'400'000'000, 259'200'000'000,
    604'800'000'000};
inline constexpr std::size_t histogram_buckets = 16;  // >= every bounds list's size + 1

// A histogram one worker writes: counts per bucket (not cumulative) and the sum of the values.
struct histogram {
  std::atomic<std::uint64_t> buckets[histogram_buckets];
  std::atomic<std::uint64_t> sum_us;
};

// One worker's view of one backend. Written only by that worker (single writer: a relaxed
// load + store is enough, no read-modify-write contention between processes).
struct backend_counters {
  std::atomic<std::uint64_t> active;      // live connections (counted from the pick, before connect)
  std::atomic<std::uint64_t> total;       // connections ever handed to this backend
  std::atomic<std::uint64_t> bytes_in;    // client -> backend
  std::atomic<std::uint64_t> bytes_out;   // backend -> client
  std::atomic<std::uint64_t> failures;    // connect failures and timeouts
  std::atomic<std::uint64_t> shed;        // closed to rebalance (cause `rebalance`)
  std::atomic<std::uint64_t> evacuated;   // closed by `backend evacuate` (cause `evacuate`)
  std::atomic<std::uint64_t> kinds[connection_kinds];  // finished connections by what they were
};

// Live client connections of one source address in one worker (--max-connections-per-source):
// an open-addressing table per worker row, keyed by a hash of the address (0 = never used; a
// key whose count fell to 0 may be taken over by another). Written only by that worker;
// readers sum a key's count over the rows.
inline constexpr std::size_t source_slots = 1024;
struct source_count {
  std::atomic<std::uint64_t> key;
  std::atomic<std::uint64_t> count;
};

struct alignas(64) worker_row {
  // Written by the master.
  std::atomic<std::int32_t> pid;
  std::atomic<worker_state> state;
  std::atomic<std::uint32_t> generation;
  std::atomic<std::uint32_t> restarts;        // respawns of this slot since `run`
  std::atomic<std::int64_t> started_ms;       // unix ms when forked
  std::atomic<std::int64_t> backoff_until_ms; // next attempt, while state == backoff
  std::atomic<std::int64_t> drain_deadline_ms;// unix ms, while state == draining
  char build_id[build_id_chars];              // of the binary the worker runs (before `state`)
  // Written by the worker itself.
  std::atomic<std::uint64_t> connections;     // live client connections in this worker
  std::atomic<std::uint64_t> accepted;        // client connections accepted since start
  std::atomic<std::uint64_t> handed_over;     // tunnels sent to a newer generation (handover)
  std::atomic<std::uint64_t> handed_in;       // tunnels received from an older generation
                                              // of this table (not a predecessor table's)
  std::atomic<std::uint64_t> errors[error_kinds];
  // Like errors[], these count per instance: a slot's next worker continues from them.
  std::atomic<std::uint64_t> closes[close_causes];
  histogram handshake;        // accept to the 101 relayed to the client
  histogram backend_connect;  // connect started to connected
  histogram lifetime;         // accept to close
  // maxconn admission (worker/admission.h): while this worker takes a place under a backend's
  // maxconn, the backend's row index + 1, else 0. Every worker publishes its reservation here
  // (seq_cst) before it sums the others' (seq_cst), Dekker-style, so two workers racing for
  // the last place cannot both take it; each still writes only its own row, and a crashed
  // worker's reservation goes when the master clears its row.
  std::atomic<std::uint32_t> reserving;
  std::atomic<std::uint32_t> queued;          // clients waiting in this worker's maxconn queue
  // TLS on the listener: handshakes completed (and of those, resumed by ticket); handshakes
  // that failed (not TLS, garbage, a protocol error; plain HTTP gets a 400 first) and those
  // abandoned (the handshake timeout, or the client gone mid-handshake).
  std::atomic<std::uint64_t> tls_handshakes;
  std::atomic<std::uint64_t> tls_resumed;
  std::atomic<std::uint64_t> tls_failed;
  std::atomic<std::uint64_t> tls_abandoned;
  // TLS 1.3 connections of this worker parked now (idle, their SSL object freed: a gauge, not
  // a count, so it goes with the worker like `connections`).
  std::atomic<std::uint64_t> tls_parked;
  backend_counters backends[max_backends];
  source_count sources[source_slots];
};

struct alignas(64) backend_row {
#ifdef WSLB_NEXT_LAYOUT
  std::uint64_t next_layout_field;  // the test build of the next layout: moves every field
#endif
  // Written by the master (configuration). `address` is written before `state` turns active.
  std::atomic<backend_state> state;
  std::atomic<std::uint32_t> weight;
  std::atomic<std::uint32_t> config_epoch;    // bumped by the master whenever this row changes
  char address[address_chars];                // "HOST:PORT"
  std::uint8_t sockaddr_bytes[28];            // sockaddr_in or sockaddr_in6, for the checker
  std::atomic<std::uint32_t> sockaddr_len;
  // `--backend ...,tls[,sni=NAME][,ca=FILE]`: for the checker, `status` and workers that adopt a
  // backend added at run time. Written with `address`, before config_epoch is bumped.
  std::atomic<std::uint32_t> tls;             // 1: TLS towards this backend
  char tls_sni[address_chars];                // "" : HOST when it is a name
  char tls_ca[tls_ca_chars];                  // "" : the system store

  // Totals of workers that have exited, folded in by the master when it clears their rows.
  std::atomic<std::uint64_t> retired_total;
  std::atomic<std::uint64_t> retired_bytes_in;
  std::atomic<std::uint64_t> retired_bytes_out;
  std::atomic<std::uint64_t> retired_failures;

  // Health, written by the checker; `healthy` may also be cleared by a worker (passive check).
  std::atomic<std::uint32_t> healthy;          // 1 up, 0 down
  std::atomic<std::int32_t> check_streak;      // > 0: successes in a row, < 0: failures in a row
  std::atomic<check_result> last_result;
  std::atomic<std::int64_t> last_check_ms;     // unix ms of the last finished check
  std::atomic<std::uint32_t> last_error_seq;   // seqlock over last_error: odd while writing
  char last_error[error_chars];
  std::atomic<std::uint32_t> passive_fail_streak;  // real-traffic connect failures in a row
  std::atomic<std::uint64_t> transitions;      // up<->down changes since start

  // Load shaping. maxconn and slowstart are written by the master from the configuration
  // (workers use their own generation's copy; these are for status).
  std::atomic<std::uint32_t> maxconn;          // 0: no limit
  std::atomic<std::uint32_t> slowstart_ms;     // 0: none
  // When the backend last became able to take connections (added, or down -> up): the start
  // of its slow-start ramp. Two writers, never at once for one row: the master when it stages
  // or re-addresses the row (before any worker may pick it), the checker on down -> up.
  std::atomic<std::int64_t> up_since_ms;
  // `backend evacuate`, written by the master: unix ms the evacuation began and by when every
  // connection must be gone; 0 = not evacuating. While set, no new connection goes here.
  std::atomic<std::int64_t> evacuate_start_ms;
  std::atomic<std::int64_t> evacuate_end_ms;
  // The rebalance plan, written by the master (supervisor/rebalancer.h): this backend's target
  // and the surplus it was planned to shed, the shed counters' sum when the plan began, and
  // the rate (connections/s x 1000) at which the workers together shed from it now, each in
  // proportion to its share of the backend's connections; 0 = not shedding.
  std::atomic<std::uint64_t> rebalance_target;
  std::atomic<std::uint64_t> rebalance_surplus;
  std::atomic<std::uint64_t> rebalance_shed_base;
  std::atomic<std::uint32_t> shed_rate_milli;

  // Folded in by the master from exited workers, like the other retired_* counters.
  std::atomic<std::uint64_t> retired_shed;
  std::atomic<std::uint64_t> retired_evacuated;
  std::atomic<std::uint64_t> retired_kinds[connection_kinds];

  // Written by the master: the operator's state (a runtime command or the state journal).
  std::atomic<admin_state> admin;

  // After an upgrade to another layout: the predecessor's live connections on this backend when
  // the table was rebuilt (they count in the predecessor's table). Several writers: the master
  // seeds it and zeroes it once the predecessor is gone; a worker takes one off (saturating,
  // inherited_take_one) for each tunnel of this backend a predecessor's worker hands it. 0
  // otherwise. Least-conn adds it to the live rows' sum, so the predecessor's tunnels are
  // neither missed nor, once handed over, counted twice.
  std::atomic<std::uint64_t> inherited_active;

  // Live connections that the OTHER nodes of the tier hold on the backend with this row's
  // address (matched by the configured "HOST:PORT" text): the sum of their last snapshots.
  // Written only by the cluster agent; zeroed by the master when it reaps the agent, so a dead
  // agent's figures never linger. 0 without --cluster. Least-conn adds it to the live rows' sum.
  std::atomic<std::uint64_t> cluster_active;
};

struct alignas(64) checker_row {
  std::atomic<std::int32_t> pid;
  std::atomic<std::uint32_t> restarts;
  std::atomic<std::uint32_t> kind;        // common/config.h check_kind
  std::atomic<std::uint32_t> interval_ms;
  std::atomic<std::uint32_t> timeout_ms;
  std::atomic<std::uint32_t> rise;
  std::atomic<std::uint32_t> fall;
  std::atomic<std::uint32_t> config_epoch; // bumped when the master changes check settings
  char path[128];
};

// State of the cluster agent's link to Redis.
enum class cluster_link : std::uint32_t {
  off = 0,          // no --cluster
  connecting = 1,   // first connection not yet made
  connected = 2,    // rounds succeed
  unreachable = 3,  // the last round failed: local counts only once peers age out
};

// Another node of the tier as the agent last saw it.
struct cluster_peer {
  char node_id[name_chars];
  std::int64_t seen_ms;        // unix ms (this node's clock) when its current snapshot arrived
  std::uint64_t connections;   // its live connections, all its backends
};

// The cluster agent's view, for `status`. `node_id` and `redis` are written by the master
// before the agent starts; everything else by the agent alone (the master zeroes the peers and
// the link after reaping it). `view_seq` is a seqlock over peer_count, peers and last_error:
// odd while the agent rewrites them; readers copy and retry.
struct alignas(64) cluster_row {
  std::atomic<std::int32_t> pid;
  std::atomic<std::uint32_t> restarts;
  std::atomic<cluster_link> link;
  std::atomic<std::uint32_t> interval_ms;
  std::atomic<std::int64_t> link_since_ms;     // unix ms of the last change of `link`
  std::atomic<std::int64_t> last_round_ms;     // unix ms of the last successful exchange
  std::atomic<std::uint64_t> rounds;           // successful exchanges since start
  std::atomic<std::uint32_t> view_seq;
  std::uint32_t peer_count;
  char node_id[name_chars];
  char redis[address_chars];                   // "HOST:PORT/DB", never the password
  char last_error[error_chars];
  cluster_peer peers[max_cluster_peers];
};

struct alignas(64) table_header {
  std::uint64_t magic;
  std::uint32_t version;
  std::uint32_t flags;
  std::uint64_t size;  // sizeof(table)
#ifdef WSLB_NEXT_LAYOUT
  std::uint64_t next_layout_field;  // the test build of the next layout: moves every field
#endif
  char name[name_chars];
  char listen[address_chars];
  std::atomic<std::int32_t> master_pid;
  std::atomic<std::int64_t> master_started_ms;
  std::atomic<std::uint32_t> workers_per_generation;
  std::atomic<std::uint32_t> current_generation;
  std::atomic<std::uint32_t> slot_high_water;   // rows [0, slot_high_water) may be in use
  std::atomic<std::uint32_t> backend_high_water;// rows [0, backend_high_water) may be in use
  // Bumped by the master (release) after it has made a backend row active, removed or freed it:
  // a worker that sees it move looks at the rows again (worker/backend_set.h).
  std::atomic<std::uint32_t> backend_epoch;
  std::atomic<std::uint64_t> round_robin_next;  // shared rotation for round-robin and ties
  std::atomic<std::uint32_t> stopping;          // 1 once a stop has begun
  std::atomic<std::uint32_t> listening;         // 1 while the listener is open
  // The rebalance plan as a whole, written by the master: 0 idle, 1 shedding; when it began and
  // when it is expected to end (unix ms), and how many plans have run.
  std::atomic<std::uint32_t> rebalance_mode;    // 0 off, 1 manual, 2 auto
  std::atomic<std::uint32_t> rebalance_running;
  std::atomic<std::int64_t> rebalance_started_ms;
  std::atomic<std::int64_t> rebalance_expected_end_ms;
  std::atomic<std::uint32_t> rebalance_plans;
  // The binary the master runs; rewritten by a new master after an upgrade.
  char master_version[version_chars];
  char master_build_id[build_id_chars];
  // Handover totals of exited workers, folded in by the master with the rest of their row.
  // Tunnels sent minus tunnels received (live rows included) is what a handover lost: sent
  // to a worker that died before taking them in.
  std::atomic<std::uint64_t> retired_handed_over;
  std::atomic<std::uint64_t> retired_handed_in;
};

// One session-ticket key: a 16-byte name (carried in each ticket, to find the key again), a
// 32-byte AES-256 key and a 32-byte HMAC-SHA256 key, as 64-bit words (readers copy them under
// tls_section::keys_seq without a data race).
inline constexpr std::size_t ticket_key_bytes = 16 + 32 + 32;
struct ticket_key {
  std::atomic<std::uint64_t> words[ticket_key_bytes / 8];
};

// One loaded certificate, for `status`. Written by the master under tls_section::certs_seq.
struct certificate_row {
  char subject[subject_chars];     // RFC 2253 subject of the leaf certificate
  char key_kind[key_kind_chars];
  std::atomic<std::int64_t> not_after_ms;  // unix ms the certificate expires
};

// TLS state shared by every worker: the session-ticket keys, so that a ticket sealed by any
// worker opens in any other, in a later generation and after a reload; and the certificates
// the current configuration serves. Written by the master only (seqlocks: odd while writing).
struct alignas(64) tls_section {
  std::atomic<std::uint32_t> keys_seq;
  std::atomic<std::uint32_t> key_count;       // 0 until the master wrote the first key
  std::atomic<std::int64_t> keys_rotated_ms;  // unix ms of the last rotation
  ticket_key keys[2];                         // [0] seals new tickets, [1] still opens them
  std::atomic<std::uint32_t> certs_seq;
  std::atomic<std::uint32_t> certificate_count;
  certificate_row certificates[max_certificates];
};

struct table {
  table_header header;
  checker_row checker;
  tls_section tls;
  cluster_row cluster;
  backend_row backends[max_backends];
  worker_row workers[max_worker_slots];
};

static_assert(std::is_standard_layout_v<table>);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);
static_assert(std::atomic<std::int64_t>::is_always_lock_free);
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);
static_assert(std::atomic<worker_state>::is_always_lock_free);
static_assert(sizeof(worker_row) % 64 == 0);
static_assert(sizeof(backend_row) % 64 == 0);
static_assert(sizeof(ticket_key) == ticket_key_bytes);
static_assert(std::atomic<cluster_link>::is_always_lock_free);

}  // namespace wslb::shm
