// What the master tells operators and their tools, apart from the control socket: the admin
// listener's pages (`/metrics`, `/status`, `/events`, `/` the dashboard), the recent events and
// reload results behind them, and systemd's notifications (READY, RELOADING, STOPPING, STATUS,
// WATCHDOG). The master owns one and calls it at the few moments that matter; everything else
// it learns by looking at the table on each housekeeping tick.
#pragma once

#include <uv.h>

#include <string>

#include "common/config.h"
#include "shm/layout.h"
#include "supervisor/admin_http.h"
#include "supervisor/admin_server.h"
#include "supervisor/event_watch.h"
#include "supervisor/metrics_text.h"
#include "supervisor/reload_transaction.h"
#include "supervisor/systemd_notify.h"

namespace wslb::supervisor {

class operations {
 public:
  // First thing at start-up, before a privilege drop: connects to systemd's notify socket.
  void open_notify_socket() { systemd_.open_from_environment(); }
  // Once the table exists: serves the admin listener on `admin_fd` (bound or passed by
  // systemd; -1 when --admin is off). Returns false with `error` when it cannot.
  bool start(uv_loop_t* loop, const config& cfg, const shm::table& t, int admin_fd,
             std::string& error);
  // Master's housekeeping: notices what changed in the table (events, READY=1 once the first
  // generation runs, the STATUS= line) and feeds systemd's watchdog.
  void tick();

  // The child table's observer: a reload begins (RELOADING=1) and how it ends (READY=1 with
  // STATUS=, the counters and the events). `text` of a `started` event says "reload" or
  // "restart"; a restart of the workers alone is no reload to systemd.
  void on_transaction(transaction_event e, const std::string& text);
  // A stop begins (STOPPING=1); stop() closes the admin listener.
  void stopping(const std::string& how);
  void stop();
  // An event the table does not show (a runtime command).
  void note(const std::string& kind, const std::string& text);

  // Answers one authorised admin request from the table and the master's own counters.
  admin_response answer(const admin_request& request) const;

 private:
  std::string status_line() const;

  const shm::table* table_ = nullptr;
  admin_server server_;
  event_watch events_;
  master_counters counters_;
  systemd_notifier systemd_;
  bool ready_sent_ = false;
  bool reloading_ = false;  // a reload's transaction is open
  std::string last_status_;
  std::int64_t last_status_ms_ = 0;
};

}  // namespace wslb::supervisor
