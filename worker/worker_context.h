// Everything one worker process owns, in one object hung off its libuv loop (loop.data): the
// loop's own handles, the live sessions, the shared read buffer and the picker. Nothing lives in
// globals. Created by run_worker after fork, destroyed when the loop has finished.
#pragma once

#include <uv.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/config.h"
#include "shm/layout.h"
#include "tls/engine.h"
#include "worker/access_log.h"
#include "worker/affinity_cookie.h"
#include "worker/backend_picker.h"
#include "worker/backend_set.h"
#include "worker/connect_queue.h"
#include "worker/shedding.h"

namespace wslb::worker {

struct session;
struct handover_sender;
struct handover_receiver;

enum class worker_phase : std::uint8_t {
  running,   // accepting and relaying
  draining,  // not accepting; relaying until the last connection closes or the deadline
  closing,   // drain deadline passed: closing what is left, spread over a short window
  stopping,  // told to stop now (or the master is gone): everything is being closed
};

// The size of the one read buffer each loop hands out to every read (libuv's suggestion).
inline constexpr std::size_t read_buffer_size = 64 * 1024;

struct worker_context {
  worker_context(const config& c, shm::table& t, std::size_t slot_index, std::uint32_t gen);
  worker_context(const worker_context&) = delete;
  worker_context& operator=(const worker_context&) = delete;

  // Returns the context a loop belongs to.
  static worker_context& of(const uv_loop_t* l) { return *static_cast<worker_context*>(l->data); }

  uv_loop_t loop{};
  // This worker's copy of its generation's configuration. Its backends grow and retire at run
  // time, through follow_backend_set() alone (worker/backend_set.h); nothing else changes it.
  config cfg;
  shm::table& table;
  shm::worker_row& row;
  const std::size_t slot;
  const std::uint32_t generation;
  char who[24] = {};  // "worker 3", for log lines

  worker_phase phase = worker_phase::running;
  int exit_code = 0;

  // Descriptors and the handles watching them. listen_fd is the master's listener (shared by
  // every worker); this process closes its copy when it starts draining.
  int listen_fd = -1;
  int master_fd = -1;
  int signal_fd = -1;
  int accept_wake_fd = -1;       // eventfd standing in for listen_fd in libuv (see acceptor.cpp)
  uv_poll_t accept_poll{};       // on accept_wake_fd: runs the acceptor when the listener is ready
  uv_timer_t accept_timer{};     // re-arms accept after sitting out or a descriptor shortage
  uv_poll_t master_poll{};
  uv_poll_t signal_poll{};
  uv_timer_t housekeeping{};     // counters to the table, health changes, idle and close sweeps
  uv_timer_t drain_timer{};      // the drain deadline, then the spread-out closes
  bool accept_open = false;      // accept_poll initialised and not closed
  bool accept_polling = false;   // in the listener's wait queue
  bool accept_exclusive = true;  // EPOLLEXCLUSIVE: false only on kernels without it
  bool sat_out_last_wake = false;  // the last accept wake-up ended in sitting out
  std::uint64_t peers_accepted_at_sit_out = 0;
  bool fd_paused = false;        // accept paused: out of descriptors or at max_sessions
  bool handshake_paused = false; // accept paused: at --tls-max-handshakes in progress
  std::size_t tls_handshakes_in_progress = 0;
  std::int64_t fd_pause_logged_ms = -1;

  // Sessions, in an intrusive list (newest first), and how many are alive (including ones
  // being closed whose handles are not yet released).
  session* sessions = nullptr;
  std::size_t live_sessions = 0;
  std::size_t max_sessions = 0;       // two descriptors each, under RLIMIT_NOFILE
  std::size_t graceful_sessions = 0;  // sessions with a close deadline to watch
  std::uint32_t next_close_at_ms = 0; // earliest such deadline (loop time, truncated); may be
                                      // early, never late: a sweep sets it exactly

  // Spread-out closing after the drain deadline.
  session* close_cursor = nullptr;    // next session to close gracefully
  std::uint64_t close_started_ms = 0; // loop time the window began
  std::uint64_t close_window_ms = 0;
  std::size_t close_total = 0;        // sessions alive when the window began
  std::size_t close_done = 0;         // graceful closes begun so far
  std::uint64_t hard_stop_ms = 0;     // loop time after which anything left is cut

  // Clients waiting for a place under the backends' maxconn.
  waiting_room waiting;
  // Rebalance and evacuation closes.
  shedder shedding;
  // Handover (handover_send.h, handover_receive.h): the instance's private runtime directory
  // holding the handover sockets, and each side's state while it is in use.
  std::string runtime_dir;
  handover_sender* sender = nullptr;
  handover_receiver* receiver = nullptr;

  backend_picker picker;
  affinity_cookie affinity;  // --sticky-cookie (off when not configured)
  access_log access;         // --access-log (off when not configured)
  backend_follower backend_set;  // what the table said of the backend rows when last looked at
  // Backend addresses ("127.0.0.1:9001") for log lines, by configured index.
  std::vector<std::string> backend_names;
  // Bytes relayed since the last flush, by configured index: the hot path adds here and the
  // housekeeping tick writes them to the table, so no read touches shared memory.
  struct byte_counts {
    std::uint64_t in = 0;   // client -> backend
    std::uint64_t out = 0;  // backend -> client
  };
  std::array<byte_counts, shm::max_backends> unflushed{};
  // Health of each configured backend as last seen (for --on-down close).
  std::array<std::uint8_t, shm::max_backends> seen_healthy{};
  // Rate limit for connect-failure log lines, by configured index.
  std::array<std::int64_t, shm::max_backends> failure_logged_ms{};
  std::array<std::uint32_t, shm::max_backends> failures_unlogged{};
  // The TLS failure last logged for each backend (logged again only when it changes).
  std::array<std::string, shm::max_backends> tls_failure_logged{};

  // TLS (listener and backends): the BIO every connection's engine shares and the ciphertext
  // it produces; the plaintext of the records of one read (client_input and backend_input read
  // from here), room for a read_buffer_size of ciphertext in whole records.
  tls::engine_io tls_io;
  alignas(64) char tls_plain[read_buffer_size];

  alignas(64) char read_buffer[read_buffer_size];
};

// Session list maintenance and lifetime accounting (session.cpp).
void link_session(worker_context& ctx, session* s);
void unlink_session(worker_context& ctx, session* s);

// Writes the relayed-byte counters to the worker's row: all backends (housekeeping tick and
// exit) or one (when one of its connections closes).
void flush_byte_counters(worker_context& ctx);
void flush_byte_counters(worker_context& ctx, std::size_t index);

// The loop-wide read buffer for every read of this worker (uv_alloc_cb).
void alloc_read_buffer(uv_handle_t* handle, std::size_t suggested, uv_buf_t* buf);

}  // namespace wslb::worker
