// The master's part of TLS: the certificates `status` shows, the session-ticket keys every
// worker reads (created at start, rotated on schedule) and expiry warnings. Master only.
#pragma once

#include <cstdint>

#include "common/config.h"
#include "shm/layout.h"
#include "supervisor/reload_transaction.h"

namespace wslb::supervisor {

// Makes `cfg`'s certificates the ones the table shows (none when TLS is off) and logs one line
// each, a warning when it expires within tls::expiry_warning_days. At start and when a reload
// commits.
void publish_tls(shm::table& t, const config& cfg, std::int64_t now_ms);

// With TLS on: creates the first ticket key, or rotates when the current one has sealed
// tickets for cfg.tls.ticket_rotation_ms (the previous one still opens them), logging the
// certificates' expiry warnings again at each rotation. Called from the master's housekeeping.
void rotate_ticket_keys_when_due(shm::table& t, const config& cfg, std::int64_t now_ms);

// A reload's certificates: prepare() reads and checks them, and the CA files of TLS backends
// (a bad one refuses the reload), commit() shows them in the table. The ticket keys are the instance's, not a generation's:
// a reload keeps them, so sessions resume across it.
class tls_step : public reload_step {
 public:
  explicit tls_step(shm::table& t) : table_(t) {}
  std::string prepare(config& next) override;
  void commit(const config& next) override;
  void roll_back() override {}

 private:
  shm::table& table_;
};

}  // namespace wslb::supervisor
