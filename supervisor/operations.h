// What the master tells operators and their tools, apart from the control socket: the admin
// listener's pages (`/metrics`, `/status`, `/events`, `/` the dashboard), the recent events and
// reload results behind them, and systemd's notifications (READY, RELOADING, STOPPING, STATUS,
// WATCHDOG). The master owns one and calls it at the few moments that matter; everything else
// it learns by looking at the table on each housekeeping tick.
#pragma once

#include <uv.h>

#include <string>
#include <vector>

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
  // A stop begins (STOPPING=1); stop() closes the admin listener (this process's descriptor
  // of it: after an upgrade the successor's copy goes on listening, so no client is refused).
  void stopping(const std::string& how);
  void stop();

  // `wslb upgrade` (old master): the admin listener's descriptor to pass on (-1 without
  // --admin), and the environment the successor notifies systemd with.
  int admin_fd() const { return server_.fd(); }
  // Old master, once the successor serves: stops accepting admin clients (the successor
  // accepts them on its copy of the listener) and answers the ones it has; keeps a
  // descriptor of the listener, in case the successor dies and this master takes back over.
  void stop_admin_listening();
  // Old master taking the instance back from a successor that died: serves the admin listener
  // again. Logs why when it cannot.
  void resume_admin_listening();
  std::vector<std::string> successor_environment() const {
    return systemd_.successor_environment();
  }
  // Old master, once the successor serves: tells systemd its pid is the main one (accepted
  // from the main pid even under NotifyAccess=main).
  void hand_main_pid_to(int pid);
  // New master started by an upgrade: its READY=1 says MAINPID=<its pid> first, so systemd
  // follows it when its predecessor exits.
  void announce_main_pid() { announce_main_pid_ = true; }
  // An event the table does not show (a runtime command).
  void note(const std::string& kind, const std::string& text);

  // Answers one authorised admin request from the table and the master's own counters.
  admin_response answer(const admin_request& request) const;

 private:
  std::string status_line() const;

  const shm::table* table_ = nullptr;
  uv_loop_t* loop_ = nullptr;
  std::string admin_token_;
  admin_server server_;
  int admin_reserve_fd_ = -1;  // stop_admin_listening's copy, until resumed or stopped
  event_watch events_;
  master_counters counters_;
  systemd_notifier systemd_;
  bool ready_sent_ = false;
  bool announce_main_pid_ = false;
  bool reloading_ = false;  // a reload's transaction is open
  std::string last_status_;
  std::int64_t last_status_ms_ = 0;
};

}  // namespace wslb::supervisor
