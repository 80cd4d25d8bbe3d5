// The worker's side of its link to the master and of its signals. The master talks over a
// SOCK_SEQPACKET socketpair (one byte per message, worker_main.h); EOF or an error there means
// the master is gone and the worker must not serve on as an orphan. Signals arrive through a
// signalfd, not libuv's signal handling: after fork() libuv's process-wide signal state still
// belongs to the master's loop.
#pragma once

#include "worker/worker_context.h"

namespace wslb::worker {

// Blocks SIGTERM, SIGINT, SIGQUIT and SIGUSR1 (they are read from a signalfd instead), ignores SIGPIPE
// (a write to a reset peer is an error code, not a death), and ignores SIGHUP and SIGUSR2,
// which are meant for the master. Returns the signalfd, or -1 with errno set.
int take_over_signals();

// Starts watching master_fd and signal_fd. Returns a libuv error code, 0 on success.
//   msg_drain, SIGQUIT          -> begin_drain
//   msg_stop, SIGTERM, SIGINT   -> stop_now (exit 0)
//   msg_reopen_logs, SIGUSR1    -> the access log is opened again (log rotation)
//   EOF or error on master_fd   -> stop_now (the master is gone)
int watch_master_and_signals(worker_context& ctx);

// Tells the master this worker is accepting. False if the message could not be sent.
bool send_ready(worker_context& ctx);

}  // namespace wslb::worker
