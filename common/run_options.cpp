#include "common/run_options.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string_view>

#include <CLI/CLI.hpp>

#include "common/access_log_file.h"
#include "common/config_file.h"
#include "common/parse.h"
#include "common/run_as.h"
#include "common/redis_url.h"
#include "shm/layout.h"
#include "tls/server_settings.h"

namespace wslb {

namespace {

// Workers per generation: half the table's slots, so that a new generation can start while the
// old one drains.
constexpr std::uint32_t max_workers = shm::max_worker_slots / 2;

// Raw option strings as CLI11 collects them; validated afterwards so that every message names
// the flag and the offending value in the same words.
struct raw_options {
  std::string listen = "127.0.0.1:8080";
  std::vector<std::string> backends;
  std::string workers = "auto";
  std::string balance = "least-conn";
  std::string mode = "http";
  std::string forward_headers = "on";
  std::string trusted_proxies;
  std::string max_connections = "0";
  std::string max_connections_per_source = "0";
  std::string tcp_keepalive = "on";
  std::string sticky_cookie;
  std::string proxy_protocol = "off";
  std::string handshake_timeout = "10s";
  std::string connect_timeout = "3s";
  std::string idle_timeout = "0";
  std::string max_header_size = "16k";
  std::string drain_timeout = "30s";
  std::string on_down = "keep";
  std::string handover = "on";
  std::string check = "tcp";
  std::string check_interval = "3s";
  std::string check_rise = "2";
  std::string check_fall = "3";
  std::string check_timeout = "1s";
  std::string check_path = "/";
  std::string admin;
  std::string admin_token;
  std::string user;
  std::string queue_timeout = "5s";
  std::string rebalance = "manual";
  std::string rebalance_tolerance = "10%";
  std::string rebalance_rate = "2%";
  std::string rebalance_max_rate = "100";
  std::string rebalance_min_age = "60s";
  std::string rebalance_close_code = "1012";
  std::string cluster;
  std::string node_id;
  std::string cluster_interval = "500ms";
  std::vector<std::string> tls_certs;
  std::vector<std::string> tls_keys;
  std::string tls_min_version = "1.2";
  std::string tls_ciphers = tls::default_cipher_list;
  std::string tls_ticket_rotation = "1h";
  std::string tls_max_handshakes = "256";
  std::string tls_park_after = "2s";
};

void add_options(CLI::App& app, raw_options& raw, config& out) {
  app.set_config("--config", "", "Read options from a TOML/INI file (same names as the flags)");
  app.allow_config_extras(CLI::config_extras_mode::error);  // check_config_file says it better
  app.add_option("--listen", raw.listen, "Listen address HOST:PORT")->capture_default_str();
  app.add_option("--backend", raw.backends, "Backend HOST:PORT[,weight=N] (repeat)");
  app.add_option("--workers", raw.workers, "Worker processes (auto = one per CPU)")
      ->capture_default_str();
  app.add_option("--name", out.name, "Instance name (table, control socket)")
      ->capture_default_str();
  app.add_option("--balance", raw.balance,
                 "least-conn | round-robin | source-hash | header:NAME | cookie:NAME | query:NAME")
      ->capture_default_str();
  app.add_option("--mode", raw.mode, "http (parse the request head, then tunnel) | tcp")
      ->capture_default_str();
  app.add_option("--forward-headers", raw.forward_headers, "on | off (http mode)")
      ->capture_default_str();
  app.add_option("--trusted-proxies", raw.trusted_proxies,
                 "CIDR[,CIDR...]: peers whose forwarding headers are kept and appended to");
  app.add_option("--sticky-cookie", raw.sticky_cookie,
                 "NAME[,max-age=DURATION]: affinity cookie naming the backend (http mode)");
  app.add_option("--max-connections", raw.max_connections,
                 "Client connections of the instance, beyond them 503 (tcp: closed); 0 = none")
      ->capture_default_str();
  app.add_option("--max-connections-per-source", raw.max_connections_per_source,
                 "Client connections from one address; 0 = none")
      ->capture_default_str();
  app.add_option("--tcp-keepalive", raw.tcp_keepalive,
                 "on | off: TCP keepalive and TCP_USER_TIMEOUT on both sides")
      ->capture_default_str();
  app.add_option("--proxy-protocol", raw.proxy_protocol, "off | v1 | v2, towards backends")
      ->capture_default_str();
  app.add_option("--handshake-timeout", raw.handshake_timeout, "Time to receive a request head")
      ->capture_default_str();
  app.add_option("--connect-timeout", raw.connect_timeout, "Backend connect timeout")
      ->capture_default_str();
  app.add_option("--idle-timeout", raw.idle_timeout, "Tunnel idle timeout (0 = none)")
      ->capture_default_str();
  app.add_option("--max-header-size", raw.max_header_size, "Largest request head accepted")
      ->capture_default_str();
  app.add_option("--drain-timeout", raw.drain_timeout,
                 "How long a draining worker may keep its clients")
      ->capture_default_str();
  app.add_option("--on-down", raw.on_down, "keep | close established connections of a down backend")
      ->capture_default_str();
  app.add_option("--handover", raw.handover,
                 "on | off: a restart passes established tunnels to the new workers (off: drain)")
      ->capture_default_str();
  app.add_option("--check", raw.check, "tcp | http | websocket | none")->capture_default_str();
  app.add_option("--check-interval", raw.check_interval, "Time between two checks of a backend")
      ->capture_default_str();
  app.add_option("--check-rise", raw.check_rise, "Good checks in a row that bring a backend up")
      ->capture_default_str();
  app.add_option("--check-fall", raw.check_fall, "Failed checks in a row that take a backend down")
      ->capture_default_str();
  app.add_option("--check-timeout", raw.check_timeout, "Time one check may take")
      ->capture_default_str();
  app.add_option("--check-path", raw.check_path, "Request target of http and websocket checks")
      ->capture_default_str();
  app.add_option("--admin", raw.admin, "Admin listener HOST:PORT: /metrics, /status, / (off by default)");
  app.add_option("--admin-token", raw.admin_token,
                 "Bearer token the admin listener requires (better in the --config file)");
  app.add_option("--state-file", out.state_file,
                 "Journal of runtime backend changes (default: in the runtime directory)");
  app.add_option("--access-log", out.access_log,
                 "PATH, or - for standard output: one JSON line per request or connection");
  app.add_option("--user", raw.user, "USER[:GROUP] to run as once the sockets are bound (as root)");
  app.add_option("--queue-timeout", raw.queue_timeout,
                 "How long a client waits when every backend is at its maxconn")
      ->capture_default_str();
  app.add_option("--rebalance", raw.rebalance,
                 "off | manual (`wslb rebalance`) | auto (after an add, an up, a weight change)")
      ->capture_default_str();
  app.add_option("--rebalance-tolerance", raw.rebalance_tolerance,
                 "Shed only from backends above target x (1 + this)")
      ->capture_default_str();
  app.add_option("--rebalance-rate", raw.rebalance_rate,
                 "Shedding pace per backend, a share of its connections per second")
      ->capture_default_str();
  app.add_option("--rebalance-max-rate", raw.rebalance_max_rate,
                 "Instance-wide cap on rebalance closes per second")
      ->capture_default_str();
  app.add_option("--rebalance-min-age", raw.rebalance_min_age,
                 "Never shed a connection younger than this")
      ->capture_default_str();
  app.add_option("--rebalance-close-code", raw.rebalance_close_code,
                 "WebSocket close code sent to a shed client")
      ->capture_default_str();
  app.add_option("--cluster", raw.cluster,
                 "Share live counts with a tier of nodes: redis://[:PASSWORD@]HOST:PORT[/DB]");
  app.add_option("--node-id", raw.node_id, "This node's name in the tier (default: host name)");
  app.add_option("--cluster-interval", raw.cluster_interval,
                 "How often the nodes exchange their counts")
      ->capture_default_str();
  app.add_option("--tls-cert", raw.tls_certs,
                 "TLS certificate chain, PEM (repeat with --tls-key; the first is the default)");
  app.add_option("--tls-key", raw.tls_keys, "Private key of the --tls-cert at the same position");
  app.add_option("--tls-min-version", raw.tls_min_version, "1.2 | 1.3")->capture_default_str();
  app.add_option("--tls-ciphers", raw.tls_ciphers, "TLS 1.2 cipher list (OpenSSL syntax)");
  app.add_option("--tls-ticket-rotation", raw.tls_ticket_rotation,
                 "How long a session-ticket key seals new tickets (then opens them as long again)")
      ->capture_default_str();
  app.add_option("--tls-max-handshakes", raw.tls_max_handshakes,
                 "TLS handshakes in progress per worker; more wait in the accept queue")
      ->capture_default_str();
  app.add_option("--tls-park-after", raw.tls_park_after,
                 "Idle time after which a TLS 1.3 connection frees its OpenSSL state (0: never)")
      ->capture_default_str();
}

// Each validate_* returns an error message naming the flag, or "" when the value is good.
std::string flag_error(const char* flag, const std::string& detail) {
  return std::string(flag) + ": " + detail;
}

std::string validate_duration(const char* flag, const std::string& text, std::uint32_t& out) {
  std::string error;
  return parse_duration_ms(text, out, error) ? std::string() : flag_error(flag, error);
}

std::string validate_count(const char* flag, const std::string& text, std::uint32_t lo,
                           std::uint32_t hi, std::uint32_t& out) {
  try {
    std::size_t used = 0;
    const unsigned long v = std::stoul(text, &used);
    if (used == text.size() && v >= lo && v <= hi) {
      out = static_cast<std::uint32_t>(v);
      return {};
    }
  } catch (const std::exception&) {
  }
  return flag_error(flag, "'" + text + "' is not a whole number from " + std::to_string(lo) +
                              " to " + std::to_string(hi));
}

// "10%", "2.5%", "10": a percentage with at most one decimal, as tenths of a percent.
std::string validate_percent(const char* flag, const std::string& text, std::uint32_t lo_permille,
                             std::uint32_t hi_permille, std::uint32_t& out_permille) {
  std::string digits = text;
  if (!digits.empty() && digits.back() == '%') digits.pop_back();
  const auto dot = digits.find('.');
  std::string whole = digits.substr(0, dot);
  std::string tenth = dot == std::string::npos ? "0" : digits.substr(dot + 1);
  const bool shaped = !whole.empty() && whole.size() <= 6 && tenth.size() == 1 &&
                      whole.find_first_not_of("0123456789") == std::string::npos &&
                      tenth.find_first_not_of("0123456789") == std::string::npos;
  if (shaped) {
    const std::uint32_t v = static_cast<std::uint32_t>(std::stoul(whole) * 10 + std::stoul(tenth));
    if (v >= lo_permille && v <= hi_permille) {
      out_permille = v;
      return {};
    }
  }
  char range[64];
  std::snprintf(range, sizeof range, "%u.%u%% to %u.%u%%", lo_permille / 10, lo_permille % 10,
                hi_permille / 10, hi_permille % 10);
  return flag_error(flag, "'" + text + "' is not a percentage from " + range);
}

template <typename Enum>
std::string validate_choice(const char* flag, const std::string& text,
                            std::initializer_list<std::pair<const char*, Enum>> choices,
                            Enum& out) {
  std::string names;
  for (const auto& [name, value] : choices) {
    if (text == name) {
      out = value;
      return {};
    }
    names += names.empty() ? name : std::string(", ") + name;
  }
  return flag_error(flag, "'" + text + "' is not one of " + names);
}

// 1-48 letters, digits and the `punctuation` characters (--name, --node-id).
bool is_name(const std::string& text, std::string_view punctuation) {
  return !text.empty() && text.size() <= 48 &&
         std::all_of(text.begin(), text.end(), [&](char c) {
           return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  punctuation.find(c) != std::string_view::npos;
         });
}

// --cluster, --node-id and --cluster-interval; the node id defaults to the host name.
std::string validate_cluster(const raw_options& raw, cluster_config& out) {
  std::string error;
  if (auto e = validate_duration("--cluster-interval", raw.cluster_interval, out.interval_ms);
      !e.empty()) {
    return e;
  }
  if (out.interval_ms < 50 || out.interval_ms > 60'000) {
    return flag_error("--cluster-interval", "'" + raw.cluster_interval + "' must be 50ms to 60s");
  }
  if (raw.cluster.empty()) {
    if (!raw.node_id.empty()) return flag_error("--node-id", "needs --cluster");
    return {};
  }
  if (!parse_redis_url(raw.cluster, out.redis, error)) return flag_error("--cluster", error);
  out.node_id = raw.node_id;
  if (!out.node_id.empty()) {
    if (is_name(out.node_id, "_-.")) return {};
    return flag_error("--node-id",
                      "'" + out.node_id + "' must be 1-48 letters, digits, '.', '-' or '_'");
  }
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  out.node_id = host;
  if (is_name(out.node_id, "_-.")) return {};
  return flag_error("--node-id", "the host name '" + out.node_id +
                                     "' is not a usable node id: give one (1-48 letters, "
                                     "digits, '.', '-' or '_')");
}

// The --tls-* flags, in pairs. The files are read later (tls::load_listener_tls), once the
// whole configuration is known to be good.
std::string validate_tls(const raw_options& raw, config& out) {
  tls::server_settings& settings = out.tls.settings;
  settings.certificates.clear();
  if (raw.tls_certs.size() != raw.tls_keys.size()) {
    return flag_error(raw.tls_certs.size() < raw.tls_keys.size() ? "--tls-cert" : "--tls-key",
                      std::to_string(raw.tls_certs.size()) + " --tls-cert but " +
                          std::to_string(raw.tls_keys.size()) +
                          " --tls-key; give them in pairs, in the same order");
  }
  if (raw.tls_certs.size() > shm::max_certificates) {
    return flag_error("--tls-cert",
                      "at most " + std::to_string(shm::max_certificates) + " certificates");
  }
  for (std::size_t i = 0; i < raw.tls_certs.size(); ++i) {
    settings.certificates.push_back({raw.tls_certs[i], raw.tls_keys[i]});
  }
  if (std::string e = validate_choice(
          "--tls-min-version", raw.tls_min_version,
          {{"1.2", tls::tls_version::tls1_2}, {"1.3", tls::tls_version::tls1_3}},
          settings.min_version);
      !e.empty()) {
    return e;
  }
  if (out.tls.ticket_rotation_ms < 1000) {
    return flag_error("--tls-ticket-rotation", "'" + raw.tls_ticket_rotation + "' is below 1s");
  }
  settings.ciphers = raw.tls_ciphers;
  settings.alpn_http1 = out.mode == proxy_mode::http;
  // A ticket opens while its key is current or previous: up to two rotation periods.
  settings.ticket_lifetime_s = out.tls.ticket_rotation_ms / 1000 * 2;
  return {};
}

std::string validate(const raw_options& raw, config& out) {
  std::string error;
  if (!parse_endpoint(raw.listen, out.listen, error, /*allow_port_zero=*/false)) {
    return flag_error("--listen", error);
  }
  if (raw.backends.empty()) return flag_error("--backend", "at least one backend is required");
  out.backends.clear();
  for (const auto& text : raw.backends) {
    backend_config b;
    if (!parse_backend(text, b, error)) return flag_error("--backend", error);
    out.backends.push_back(b);
  }
  if (out.backends.size() > shm::max_backends) {
    return flag_error("--backend", "at most " + std::to_string(shm::max_backends) + " backends");
  }
  if (raw.workers == "auto") {
    // One per CPU, within the limit an explicit --workers has.
    const long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    out.workers = static_cast<unsigned>(std::clamp<long>(cpus, 1, max_workers));
  } else {
    std::uint32_t n = 0;
    if (auto e = validate_count("--workers", raw.workers, 1, max_workers, n); !e.empty()) return e;
    out.workers = n;
  }
  if (!parse_balance(raw.balance, out.balance, error)) return flag_error("--balance", error);
  if (!is_name(out.name, "_-")) {
    return flag_error("--name", "'" + out.name + "' must be 1-48 letters, digits, '-' or '_'");
  }
  std::uint32_t close_code = 0;
  // Every value is checked; the first error, in this order, is the one reported.
  const std::string errors[] = {
      validate_choice("--mode", raw.mode, {{"http", proxy_mode::http}, {"tcp", proxy_mode::tcp}},
                      out.mode),
      validate_choice("--forward-headers", raw.forward_headers, {{"on", true}, {"off", false}},
                      out.forward_headers),
      validate_choice("--proxy-protocol", raw.proxy_protocol,
                      {{"off", proxy_protocol::off},
                       {"v1", proxy_protocol::v1},
                       {"v2", proxy_protocol::v2}},
                      out.proxy_proto),
      validate_choice("--on-down", raw.on_down,
                      {{"keep", on_down_policy::keep}, {"close", on_down_policy::close}},
                      out.on_down),
      validate_choice("--handover", raw.handover, {{"on", true}, {"off", false}}, out.handover),
      validate_choice("--check", raw.check,
                      {{"tcp", check_kind::tcp},
                       {"http", check_kind::http},
                       {"websocket", check_kind::websocket},
                       {"none", check_kind::none}},
                      out.check.kind),
      validate_duration("--handshake-timeout", raw.handshake_timeout, out.handshake_timeout_ms),
      validate_duration("--connect-timeout", raw.connect_timeout, out.connect_timeout_ms),
      validate_duration("--idle-timeout", raw.idle_timeout, out.idle_timeout_ms),
      validate_duration("--drain-timeout", raw.drain_timeout, out.drain_timeout_ms),
      validate_duration("--check-interval", raw.check_interval, out.check.interval_ms),
      validate_duration("--check-timeout", raw.check_timeout, out.check.timeout_ms),
      validate_count("--check-rise", raw.check_rise, 1, 100, out.check.rise),
      validate_count("--check-fall", raw.check_fall, 1, 100, out.check.fall),
      validate_count("--max-connections", raw.max_connections, 0, 100'000'000,
                     out.max_connections),
      validate_count("--max-connections-per-source", raw.max_connections_per_source, 0,
                     100'000'000, out.max_connections_per_source),
      validate_choice("--tcp-keepalive", raw.tcp_keepalive, {{"on", true}, {"off", false}},
                      out.tcp_keepalive),
      validate_duration("--queue-timeout", raw.queue_timeout, out.shaping.queue_timeout_ms),
      validate_choice("--rebalance", raw.rebalance,
                      {{"off", rebalance_mode::off},
                       {"manual", rebalance_mode::manual},
                       {"auto", rebalance_mode::auto_}},
                      out.shaping.rebalance),
      validate_percent("--rebalance-tolerance", raw.rebalance_tolerance, 0, 1000,
                       out.shaping.tolerance_permille),
      validate_percent("--rebalance-rate", raw.rebalance_rate, 1, 1000, out.shaping.rate_permille),
      validate_count("--rebalance-max-rate", raw.rebalance_max_rate, 1, 100'000,
                     out.shaping.max_rate),
      validate_duration("--rebalance-min-age", raw.rebalance_min_age, out.shaping.min_age_ms),
      validate_count("--rebalance-close-code", raw.rebalance_close_code, 1000, 4999, close_code),
      validate_cluster(raw, out.cluster),
      validate_duration("--tls-ticket-rotation", raw.tls_ticket_rotation,
                        out.tls.ticket_rotation_ms),
      validate_count("--tls-max-handshakes", raw.tls_max_handshakes, 1, 100000,
                     out.tls.max_handshakes),
      validate_duration("--tls-park-after", raw.tls_park_after, out.tls.park_after_ms),
  };
  for (const std::string& e : errors) {
    if (!e.empty()) return e;
  }
  out.shaping.close_code = static_cast<std::uint16_t>(close_code);
  if (out.handshake_timeout_ms == 0) return flag_error("--handshake-timeout", "must be above 0");
  if (out.idle_timeout_ms > max_idle_timeout_ms)
    return flag_error("--idle-timeout",
                      "'" + raw.idle_timeout + "' is above 596h (the longest the idle timer holds)");
  if (out.connect_timeout_ms == 0) return flag_error("--connect-timeout", "must be above 0");
  if (out.check.kind != check_kind::none && out.check.interval_ms < 10)
    return flag_error("--check-interval", "'" + raw.check_interval + "' is below 10ms");
  if (out.check.kind != check_kind::none && out.check.timeout_ms == 0)
    return flag_error("--check-timeout", "must be above 0");
  if (raw.check_path.empty() || raw.check_path.front() != '/' || raw.check_path.size() > 120 ||
      raw.check_path.find_first_of(" \r\n") != std::string::npos)
    return flag_error("--check-path", "'" + raw.check_path + "' must start with '/', without spaces");
  out.check.path = raw.check_path;
  if (!parse_cidr_list(raw.trusted_proxies, out.trusted_proxies, error))
    return flag_error("--trusted-proxies", error);
  out.sticky_cookie = {};
  if (!raw.sticky_cookie.empty() && !parse_sticky_cookie(raw.sticky_cookie, out.sticky_cookie, error))
    return flag_error("--sticky-cookie", error);
  if (!raw.admin.empty()) {
    if (!parse_endpoint(raw.admin, out.admin.where, error)) return flag_error("--admin", error);
    out.admin.enabled = true;
  }
  if (raw.admin_token.find_first_of(" \t\r\n") != std::string::npos)
    return flag_error("--admin-token", "must not contain spaces or line breaks");
  if (!raw.admin_token.empty() && raw.admin.empty())
    return flag_error("--admin-token", "needs --admin");
  out.admin.token = raw.admin_token;
  if (!raw.user.empty() && !parse_run_as(raw.user, out.run_as, error))
    return flag_error("--user", error);
  if (!out.access_log.empty()) {
    // Opened (and created) now, so that a path that cannot work stops the start or the reload
    // here rather than every worker later.
    if (auto e = prepare_access_log_file(out.access_log, out.run_as); !e.empty())
      return flag_error("--access-log", e);
  }
  if (!parse_size(raw.max_header_size, out.max_header_size, error))
    return flag_error("--max-header-size", error);
  if (out.max_header_size < 256 || out.max_header_size > 1024 * 1024)
    return flag_error("--max-header-size", "'" + raw.max_header_size + "' must be 256 to 1m");
  return validate_tls(raw, out);
}

// The keys a config file may hold: every option but --config and --help.
std::vector<config_key> config_keys(const CLI::App& app) {
  std::vector<config_key> keys;
  for (const CLI::Option* opt : app.get_options()) {
    for (const std::string& name : opt->get_lnames()) {
      if (name != "config" && name != "help") {
        keys.push_back({name, opt->get_items_expected_max() > 1});
      }
    }
  }
  return keys;
}

}  // namespace

run_parse_result parse_run_args(const std::vector<std::string>& args, config& out) {
  CLI::App app{"wslb run: start a load balancer instance", "wslb run"};
  raw_options raw;
  add_options(app, raw, out);
  run_parse_result result;
  // Checked before CLI11 reads the file, which would refuse a bad key without naming the file.
  const std::string config_path = config_file_argument(args);
  if (!config_path.empty()) {
    result.message = check_config_file(config_path, config_keys(app));
    if (!result.message.empty()) return result;
  }
  try {
    std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 pops from the back
    app.parse(reversed);
  } catch (const CLI::CallForHelp&) {
    result.help = true;
    result.message = app.help();
    return result;
  } catch (const CLI::ParseError& e) {
    result.message = e.what();
    return result;
  }
  result.message = attribute_to_config_file(validate(raw, out), config_path, args);
  result.ok = result.message.empty();
  return result;
}

}  // namespace wslb
