// Choosing and connecting a session's backend: pick, count, connect with a timeout, fail over to
// the next backend (each at most once), record passive health, then hand over to the relay.
// The state for this phase lives in a connect_state that exists only until the tunnel starts,
// so an established connection does not pay for it.
#pragma once

#include <uv.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "protocol/http_request.h"
#include "worker/backend_picker.h"
#include "worker/session.h"

namespace wslb::worker {

enum class handshake_step : std::uint8_t { reading_head, connecting, done };

struct connect_state {
  uv_connect_t req{};
  uv_timer_t timer{};  // handshake timeout while reading the head, then connect timeout
  session* owner = nullptr;
  handshake_step step = handshake_step::connecting;
  bool connect_outstanding = false;  // a connect request is out and its outcome not yet handled
  int last_error = 0;                // libuv error of the last failed attempt (UV_ETIMEDOUT: ours)
  tried_set tried = 0;
  std::optional<std::uint64_t> sticky_key;
  sockaddr_storage peer{};           // the client's address (source-hash, PROXY, X-Forwarded-For)
  // http mode: the request head being read, then what follows it.
  std::unique_ptr<protocol::request_head_parser> head;
  std::string early;                 // bytes the client sent after its head, forwarded after it
};

// Creates the session's connect_state (with its timer). Returns false when libuv refused.
bool open_connect_state(session* s, const sockaddr_storage& peer);
// The connect_state's timer: the request head's deadline while it is read, then the connect
// timeout of each attempt.
void on_connect_state_timer(uv_timer_t* t);

// Stops and releases the connect_state (its timer is closed; the memory goes with it).
void release_connect_state(session* s);

// Picks a backend (excluding those tried) and connects to it; on success starts the tunnel,
// on failure tries the next, and when none is left answers (http: 503 / 502 / 504) or closes
// (tcp). Called once the client's request is known (tcp mode: at once).
void connect_backend(session* s);

// The sticky key of a client address (source-hash): a hash of its IP, without the port.
std::uint64_t hash_client_address(const sockaddr_storage& peer);

}  // namespace wslb::worker
