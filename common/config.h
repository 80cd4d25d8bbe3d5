// The configuration of a running instance: what `wslb run` flags and `--config` files say.
// The master parses it (supervisor) and forked workers and the checker inherit a copy.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/cidr.h"
#include "tls/server_settings.h"

namespace wslb::tls {
class server_context;
class client_context;
}

namespace wslb {

// A host and port, resolved once at parse time (a name to its first address).
struct endpoint {
  std::string host;          // as written (a name stays a name), without brackets
  std::uint16_t port = 0;
  sockaddr_storage addr{};
  socklen_t addr_len = 0;

  std::string to_string() const;     // "HOST:PORT", "[v6]:PORT"
  std::string address_text() const;  // the resolved address, numeric: "10.0.0.5", "::1"
  bool same_address(const endpoint& other) const;  // same resolved address and port
};

// `--backend HOST:PORT,tls[,sni=NAME][,ca=FILE]`: TLS towards the backend, verified.
struct backend_tls_config {
  bool enabled = false;
  std::string sni;      // the name sent and verified; empty: HOST when it is a name
  std::string ca_file;  // absolute path of the CA bundle; empty: the system store
  // Built where the configuration is loaded (tls::load_backend_tls), shared by the backends
  // with the same CA file.
  std::shared_ptr<tls::client_context> context;
};

struct backend_config {
  endpoint where;
  std::uint32_t weight = 1;
  std::uint32_t maxconn = 0;       // live connections across every worker; 0 = no limit
  std::uint32_t slowstart_ms = 0;  // ramp of new connections after coming up; 0 = none
  backend_tls_config tls;
  std::size_t row = 0;  // index of this backend's row in the shared table (set by the master)
};

enum class balance_mode { least_conn, round_robin, source_hash, header, cookie, query };
enum class proxy_mode { http, tcp };
enum class proxy_protocol { off, v1, v2 };
enum class check_kind : std::uint32_t { none = 0, tcp = 1, http = 2, websocket = 3 };
enum class on_down_policy { keep, close };
enum class rebalance_mode : std::uint32_t { off = 0, manual = 1, auto_ = 2 };

// Load shaping of long-lived connections: the maxconn queue and rebalancing.
struct shaping_config {
  std::uint32_t queue_timeout_ms = 5'000;  // wait for a place under maxconn, then 503 / close
  rebalance_mode rebalance = rebalance_mode::manual;
  std::uint32_t tolerance_permille = 100;  // shed only above target x (1 + tolerance): 10 %
  std::uint32_t rate_permille = 20;        // per backend: 2 % of its connections per second
  std::uint32_t max_rate = 100;            // instance-wide cap, connections per second
  std::uint32_t min_age_ms = 60'000;       // never shed a connection younger than this
  std::uint16_t close_code = 1012;         // WebSocket close code to a shed client
};

struct balance_config {
  balance_mode mode = balance_mode::least_conn;
  std::string key;  // header/cookie/query name for the sticky modes
};

struct check_config {
  check_kind kind = check_kind::tcp;
  std::uint32_t interval_ms = 3000;
  std::uint32_t rise = 2;
  std::uint32_t fall = 3;
  std::uint32_t timeout_ms = 1000;
  std::string path = "/";

  bool operator==(const check_config&) const = default;
};

// --sticky-cookie NAME[,max-age=DURATION]: the affinity cookie (off while `name` is empty).
struct sticky_cookie_config {
  std::string name;
  std::uint32_t max_age_s = 0;  // 0: a session cookie (no Max-Age)
};

// The idle timeout compares truncated 32-bit loop times (wrap-safe up to 2^31 ms).
inline constexpr std::uint32_t max_idle_timeout_ms = 0x7FFFFFFF;

// The admin listener (`--admin`, `--admin-token`): metrics, status and the dashboard over HTTP.
struct admin_config {
  bool enabled = false;
  endpoint where;
  std::string token;  // empty: no token asked
};

// `--user USER[:GROUP]`: whom the master becomes after binding its sockets.
struct run_as_config {
  std::string user;   // as written; empty: stay who started it
  std::string group;  // as written; empty: the user's login group
  unsigned uid = 0;
  unsigned gid = 0;
};

// A Redis server, from `--cluster redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`.
struct redis_target {
  std::string host;  // a name or a numeric address, without brackets
  std::uint16_t port = 6379;
  std::string user;      // empty: AUTH with the password only
  std::string password;  // empty: no AUTH
  std::uint32_t db = 0;

  std::string to_string() const;  // "HOST:PORT/DB", never the password (for logs and status)
  bool operator==(const redis_target&) const = default;
};

// A tier of nodes sharing their live counts through Redis (empty `redis.host`: off).
struct cluster_config {
  redis_target redis;
  std::string node_id;             // this node's name in the tier; the host name by default
  std::uint32_t interval_ms = 500; // how often the snapshots are exchanged

  bool enabled() const { return !redis.host.empty(); }
  bool operator==(const cluster_config&) const = default;
};

// TLS on the listener (--tls-*).
struct tls_listener_config {
  tls::server_settings settings;                 // no certificates: a plaintext listener
  std::uint32_t ticket_rotation_ms = 3'600'000;  // how long a ticket key seals new tickets
  std::uint32_t max_handshakes = 256;            // per worker, in progress at once
  std::uint32_t park_after_ms = 2'000;           // idle TLS 1.3 connections parked; 0: never
  // The certificates, loaded and checked (tls::load_listener_tls): by `wslb run` before the
  // master starts and by a reload's prepare step. Forked workers use the master's copy.
  std::shared_ptr<tls::server_context> server;

  bool enabled() const { return !settings.certificates.empty(); }
};

struct config {
  std::string name = "wslb";
  endpoint listen;
  std::vector<backend_config> backends;
  unsigned workers = 0;  // 0 = one per CPU
  balance_config balance;
  proxy_mode mode = proxy_mode::http;
  bool forward_headers = true;
  std::vector<cidr> trusted_proxies;  // peers whose forwarding headers are kept and appended to
  sticky_cookie_config sticky_cookie;
  proxy_protocol proxy_proto = proxy_protocol::off;
  std::uint32_t handshake_timeout_ms = 10'000;
  std::uint32_t connect_timeout_ms = 3'000;
  std::uint32_t idle_timeout_ms = 0;  // 0 = none; at most max_idle_timeout_ms
  std::uint32_t max_connections = 0;             // instance-wide client connections, 0 = none
  std::uint32_t max_connections_per_source = 0;  // from one client address, 0 = none
  bool tcp_keepalive = true;                     // keepalive + TCP_USER_TIMEOUT, both sides
  std::uint32_t max_header_size = 16 * 1024;
  std::uint32_t drain_timeout_ms = 30'000;
  on_down_policy on_down = on_down_policy::keep;
  // Restarts and reloads pass established tunnels to the new workers (else they drain).
  bool handover = true;
  check_config check;
  admin_config admin;
  run_as_config run_as;
  shaping_config shaping;
  std::string state_file;  // --state-file; empty: <runtime dir>/NAME.state
  std::string access_log;  // --access-log PATH, "-" (standard output); empty: off
  cluster_config cluster;
  tls_listener_config tls;
};

const char* to_string(balance_mode m);
const char* to_string(proxy_mode m);
const char* to_string(check_kind k);
const char* to_string(rebalance_mode m);

}  // namespace wslb
