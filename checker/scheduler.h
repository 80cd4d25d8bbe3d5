// The checker's rhythm: which backend rows to probe, when, and with which settings, all read
// from the shared table on every round, so that a reload or a restart of the checker itself
// needs no message. Lives in the checker process, on its libuv loop.
#pragma once

#include <sys/socket.h>
#include <uv.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "checker/probe.h"
#include "common/config.h"
#include "shm/layout.h"
#include "tls/client_context.h"
#include "tls/engine.h"

namespace wslb::checker {

// The check settings as the master last wrote them into table.checker.
struct check_settings : check_config {
  std::uint32_t epoch = 0;  // table.checker.config_epoch these were read at
};

// A consistent copy of the checker row (re-read while the master is writing it). While the
// master has never written it (config_epoch 0) the start-up copy `fallback` applies. Values
// that could stall or spin the loop are raised to sane minimums (interval 10 ms, timeout
// 1 ms, rise and fall 1); an unknown kind reads as none.
check_settings read_settings(const shm::checker_row& row, const check_config& fallback);

// First delay of a backend newly taken in hand: where the last finished check (from the
// table, `last_check_ms`, 0 = never) says the next one is due, keeping the rhythm across a
// restart of the checker; when never checked or overdue, a share of the interval by row index
// so that backends do not all fire together. Pure: used by the scheduler and the unit tests.
std::uint64_t first_delay_ms(std::int64_t last_check_unix_ms, std::int64_t now_unix_ms,
                             std::uint32_t interval_ms, std::size_t row, std::size_t rows);

class scheduler {
 public:
  // `fallback` is the start-up configuration's check section, used until the master has
  // written the checker row.
  scheduler(uv_loop_t* loop, shm::table& table, const check_config& fallback);
  scheduler(const scheduler&) = delete;
  scheduler& operator=(const scheduler&) = delete;

  // Reads the table and arms the timers. Call once, then run the loop.
  void start();
  // Cancels probes in flight and closes every handle this object owns; the loop ends once
  // they are closed (with the caller's own handles).
  void stop();

 private:
  struct slot {
    scheduler* owner = nullptr;
    std::size_t row = 0;
    bool tracked = false;          // an active row we are probing
    std::uint32_t epoch = 0;       // row config_epoch last seen
    std::uint64_t target_gen = 0;  // bumped when the row points somewhere else
    std::string address;
    sockaddr_storage addr{};
    socklen_t addr_len = 0;
    // A `tls` backend: its sni= and ca= as the row gives them, and the context built from them
    // (again whenever the row's configuration moves, so a reload re-reads the CA file), or
    // why it could not be built.
    bool tls = false;
    std::string tls_sni;
    std::string tls_ca;
    std::shared_ptr<tls::client_context> tls_ctx;
    std::string tls_error;
    uv_timer_t due{};              // next probe
    probe* in_flight = nullptr;
    std::int64_t started_ms = 0;   // monotonic start of the latest probe
  };

  void scan();
  void sync_settings();
  void sync_row(std::size_t i);
  void untrack(slot& s);
  void arm(slot& s, std::uint64_t delay_ms);
  void arm_first(slot& s);
  void start_probe_on(slot& s);
  void drop_probe(slot& s);  // cancels the probe in flight, if any
  void on_probe_done(std::size_t i, std::uint64_t gen, const probe_outcome& outcome);
  void load_tls(slot& s);

  uv_loop_t* loop_;
  shm::table& table_;
  check_config fallback_;
  check_settings settings_;
  bool stopping_ = false;
  uv_timer_t scan_timer_{};
  std::array<slot, shm::max_backends> slots_{};
  tls::engine_io tls_io_;  // every TLS probe's engine on this loop shares it
};

}  // namespace wslb::checker
