// What a connection needs before it is a plain tunnel: its timer (request head, keep-alive,
// connect), the client's address, the backend choice in progress, and in http mode the request
// and response readers. Allocated at accept, freed when the tunnel starts (tcp mode: once the
// backend is connected; http mode: after a 101, or when the connection ends), so that an
// established WebSocket or TCP tunnel does not pay for it. Owned by the session (session::hs).
#pragma once

#include <uv.h>

#include <cstdint>
#include <optional>
#include <string>

#include "protocol/http_request.h"
#include "protocol/response_reader.h"
#include "worker/backend_picker.h"
#include "worker/session.h"

namespace wslb::worker {

struct front_state {
  explicit front_state(std::size_t max_header_size) : request(max_header_size) {}

  uv_connect_t req{};
  uv_timer_t timer{};  // request head / keep-alive deadline, then each connect attempt's timeout
  session* owner = nullptr;
  bool connect_outstanding = false;  // a connect request is out and its outcome not yet handled
  int last_error = 0;                // libuv error of the last failed attempt (UV_ETIMEDOUT: ours)
  tried_set tried = 0;               // backends tried for the current request
  std::optional<std::uint64_t> sticky_key;   // hash-balancing key of the current request
  std::uint16_t preferred = no_backend_index;  // the affinity cookie's backend, if valid
  sockaddr_storage peer{};           // the client's address (source-hash, PROXY, forwarding)
  bool trusted_peer = false;         // the client is one of --trusted-proxies
  // Waiting for a place under maxconn (connect_queue.h): the timer runs the queue timeout, and
  // these link the worker's waiting_room.
  bool queued = false;
  session* queue_prev = nullptr;
  session* queue_next = nullptr;

  // http mode.
  protocol::request_head_parser request;  // the current request: head, then body framing
  protocol::response_reader response;     // the current request's answer
  std::string unread;                // client bytes read but not handled yet (the next
                                     // request, or bytes sent while connecting / upgrading)
  bool request_done = false;         // the current request's body has been relayed whole
  bool close_after_response = false; // the connection ends with the current response
  bool cookie_due = false;           // the final response gets our affinity cookie
};

// Creates the session's front_state (with its timer). Returns false when libuv refused.
bool open_front_state(session* s, const sockaddr_storage& peer);

// Stops and releases the front_state (its timer is closed; the memory goes with it).
void release_front_state(session* s);

}  // namespace wslb::worker
