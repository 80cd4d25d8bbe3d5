// The worker's queue of clients waiting for a place while every eligible backend is at its
// maxconn: first come, first served, bounded in time by --queue-timeout, after which an http
// client gets 503 with Retry-After and a tcp client a close, both counted in the row's
// errors[]. Places are looked for again whenever one of this worker's connections to a backend
// ends and, for places freed by other workers, on a short tick while anyone waits.
// Runs on the worker's loop.
#pragma once

#include <uv.h>

#include <cstddef>

namespace wslb::worker {

struct session;
struct worker_context;

// The queue itself, one per worker (worker_context::waiting).
struct waiting_room {
  session* head = nullptr;  // linked through front_state::queue_next / queue_prev
  session* tail = nullptr;
  std::size_t length = 0;
  uv_timer_t timer{};       // the retry tick while someone waits
  bool timer_open = false;
};

// Starts the queue's timer (at worker start).
void open_waiting_room(worker_context& ctx);
// Closes it (when the loop is finishing); queued sessions are closed with the others.
void close_waiting_room(worker_context& ctx);

// Puts `s` (its front_state is marked `queued`) at the back of the queue, with the queue
// timeout on the front_state's timer.
void enqueue_for_place(session* s);

// Takes `s` out of the queue if it is in it (admitted, answered, or closed).
void leave_queue(session* s);

// A place may have freed up in this worker: look at the queue on the next loop turn.
void place_freed(worker_context& ctx);

// The queue timeout of `s` fired: 503 with Retry-After (http) or a close (tcp), counted.
void on_queue_timeout(session* s);

}  // namespace wslb::worker
