// One health-check probe of one backend on the checker's libuv loop: tcp (the connect
// succeeds), http (GET answers 2xx/3xx) or websocket (upgrade answers 101 with the right
// Sec-WebSocket-Accept, then a close frame). Never blocks; bounded by its own timeout.
// Towards a `tls` backend every kind runs over TLS with the workers' verification (chain and
// name): tcp then means the handshake succeeds, and a verification failure fails the check
// with its reason.
#pragma once

#include <sys/socket.h>
#include <uv.h>

#include <cstdint>
#include <functional>
#include <string>

#include "checker/health_state.h"
#include "tls/engine.h"

namespace wslb::checker {

enum class probe_kind { tcp, http, websocket };

struct probe_target {
  probe_kind kind = probe_kind::tcp;
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  std::string host;        // Host header: the backend's "HOST:PORT"
  std::string path = "/";  // request target for http and websocket
  std::uint32_t timeout_ms = 1000;
  // TLS towards the backend (null: plaintext): the context, the loop's engine_io, and what
  // tls::aim_at_backend takes (the configured host and sni=).
  SSL_CTX* tls_ctx = nullptr;
  tls::engine_io* tls_io = nullptr;
  std::string tls_host;
  std::string tls_sni;
  std::string tls_error;  // a TLS backend whose context could not be built: fails with this
};

struct probe_outcome {
  probe_status status = probe_status::failed;
  std::string error;  // in words when not ok: "connect refused", "timeout after 1000 ms", ...
};

using probe_done = std::function<void(const probe_outcome&)>;

class probe;

// Starts a probe on `loop`. `done` runs exactly once, from the loop and never from inside
// start_probe (a failure to even start is reported the same way), unless cancel_probe() comes
// first. The probe frees itself after `done`; the pointer is valid only until then.
// A websocket probe reports success as soon as the 101 is verified and then closes the
// connection in the background with a close frame (still bounded by the timeout).
probe* start_probe(uv_loop_t* loop, const probe_target& target, probe_done done);

// Drops a probe whose `done` has not run yet: `done` will not run, its socket is closed.
void cancel_probe(probe* p);

// Text for a failed connect, e.g. "connect refused" for UV_ECONNREFUSED.
std::string connect_error_text(int uv_status);

}  // namespace wslb::checker
