#include "supervisor/metrics_text.h"

#include <cstdio>
#include <span>

#include "cli/status_view.h"
#include "shm/cluster_view.h"
#include "shm/table_ops.h"

namespace wslb::supervisor {

namespace {

constexpr auto relaxed = std::memory_order_relaxed;

// Label values may hold any byte an operator wrote in a backend name.
std::string escape_label(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

enum class family_type { gauge, counter, histogram };

// Seconds from microseconds, as Prometheus wants them: the shortest exact decimal.
std::string seconds(std::uint64_t us) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%llu.%06llu", static_cast<unsigned long long>(us / 1'000'000),
                static_cast<unsigned long long>(us % 1'000'000));
  std::string s = buf;
  while (s.back() == '0') s.pop_back();
  if (s.back() == '.') s.pop_back();
  return s;
}

// Writes families in either format. The two differ in how a counter family is named (the text
// format names it with its `_total` suffix, OpenMetrics without) and in the closing `# EOF`.
class metrics_writer {
 public:
  explicit metrics_writer(metrics_format format) : format_(format) {}

  // Starts family `name` (counters are given with their `_total` suffix).
  void family(std::string_view name, family_type type, std::string_view help) {
    std::string family_name(name);
    if (type == family_type::counter && format_ == metrics_format::openmetrics &&
        family_name.size() > 6 && family_name.ends_with("_total")) {
      family_name.resize(family_name.size() - 6);
    }
    out_ += "# HELP " + family_name + " " + std::string(help) + "\n";
    const char* type_name = type == family_type::gauge     ? "gauge"
                            : type == family_type::counter ? "counter"
                                                           : "histogram";
    out_ += "# TYPE " + family_name + " " + type_name + "\n";
  }
  // One sample: `labels` is the inside of the braces, already escaped, or empty.
  void sample(std::string_view name, std::string_view labels, std::uint64_t value) {
    sample_text(name, labels, std::to_string(value));
  }
  void sample_text(std::string_view name, std::string_view labels, const std::string& value) {
    out_ += name;
    if (!labels.empty()) out_ += "{" + std::string(labels) + "}";
    out_ += " " + value + "\n";
  }
  // A histogram family from per-bucket counts: cumulative _bucket samples by `le`, then
  // _count and _sum (seconds).
  void histogram(std::string_view name, std::string_view help,
                 std::span<const std::uint64_t> bounds_us, const shm::histogram_sums& h) {
    family(name, family_type::histogram, help);
    std::uint64_t cumulative = 0;
    const std::string bucket = std::string(name) + "_bucket";
    for (std::size_t i = 0; i < bounds_us.size(); ++i) {
      cumulative += h.buckets[i];
      sample(bucket, "le=\"" + seconds(bounds_us[i]) + "\"", cumulative);
    }
    for (std::size_t i = bounds_us.size(); i < shm::histogram_buckets; ++i) cumulative += h.buckets[i];
    sample(bucket, "le=\"+Inf\"", cumulative);
    sample(std::string(name) + "_count", "", cumulative);
    sample_text(std::string(name) + "_sum", "", seconds(h.sum_us));
  }
  std::string finish() {
    if (format_ == metrics_format::openmetrics) out_ += "# EOF\n";
    return std::move(out_);
  }

 private:
  metrics_format format_;
  std::string out_;
};

struct response_code {
  shm::error_kind kind;
  const char* code;
};
// The answers wslb writes itself. A raw TCP client closed for want of a backend got no
// answer: it is a close, not a response.
constexpr response_code own_responses[] = {
    {shm::error_kind::bad_request_400, "400"},     {shm::error_kind::request_timeout_408, "408"},
    {shm::error_kind::upgrade_required_426, "426"}, {shm::error_kind::header_too_large_431, "431"},
    {shm::error_kind::bad_gateway_502, "502"},     {shm::error_kind::no_backend_503, "503"},
    {shm::error_kind::gateway_timeout_504, "504"},
};

bool backend_shown(const shm::backend_row& b) {
  return b.state.load(relaxed) != shm::backend_state::empty;
}

std::string backend_label(const shm::backend_row& b) {
  return "backend=\"" + escape_label(b.address) + "\"";
}

// The operator's state of a backend row. A backend a reload removed drains like one put to
// drain by hand.
const char* admin_state_of(const shm::backend_row& b) {
  return b.state.load(relaxed) == shm::backend_state::removed ? "drain"
                                                              : cli::to_string(b.admin.load(relaxed));
}

constexpr const char* admin_states[] = {"ready", "drain", "maint"};

}  // namespace

metrics_format metrics_format_for(std::string_view accept) {
  return accept.find("application/openmetrics-text") != std::string_view::npos
             ? metrics_format::openmetrics
             : metrics_format::prometheus_text;
}

const char* metrics_content_type(metrics_format format) {
  return format == metrics_format::openmetrics
             ? "application/openmetrics-text; version=1.0.0; charset=utf-8"
             : "text/plain; version=0.0.4; charset=utf-8";
}

namespace {

// The cluster families, only with --cluster: the other nodes this node counts and how old
// their figures are, the link to Redis, and per backend the other nodes' connections.
void write_cluster(metrics_writer& w, const shm::table& t, std::int64_t now) {
  if (t.cluster.node_id[0] == '\0') return;
  const shm::cluster_view_copy view = shm::read_cluster_view(t);
  w.family("wslb_cluster_nodes", family_type::gauge,
           "Other nodes of the tier whose live counts this node adds to its own.");
  w.sample("wslb_cluster_nodes", "", view.peers.size());
  w.family("wslb_cluster_peer_age_seconds", family_type::gauge,
           "Age of each other node's last snapshot, as this node received it.");
  for (const shm::cluster_peer& p : view.peers) {
    const std::int64_t age_ms = now > p.seen_ms ? now - p.seen_ms : 0;
    w.sample_text("wslb_cluster_peer_age_seconds",
                  "node=\"" + escape_label(cli::shown(p.node_id)) + "\"",
                  seconds(static_cast<std::uint64_t>(age_ms) * 1000));
  }
  w.family("wslb_cluster_connected", family_type::gauge,
           "1 while the cluster agent exchanges counts with Redis.");
  w.sample("wslb_cluster_connected", "",
           t.cluster.link.load(relaxed) == shm::cluster_link::connected ? 1 : 0);
  w.family("wslb_backend_cluster_connections", family_type::gauge,
           "Live connections the other nodes of the tier hold on the backend.");
  const std::size_t backends = shm::backend_rows_in_use(t);
  for (std::size_t b = 0; b < backends; ++b) {
    if (!backend_shown(t.backends[b])) continue;
    w.sample("wslb_backend_cluster_connections", backend_label(t.backends[b]),
             t.backends[b].cluster_active.load(relaxed));
  }
}

// The load-shaping families: whether a rebalance plan runs and how many ran, and per backend
// under the current plan its target, the surplus it was to shed and what it has shed so far,
// and per evacuating backend the connections that remain.
void write_shaping(metrics_writer& w, const shm::table& t) {
  w.family("wslb_rebalance_running", family_type::gauge, "1 while a rebalance plan runs.");
  w.sample("wslb_rebalance_running", "", t.header.rebalance_running.load(relaxed) != 0 ? 1 : 0);
  w.family("wslb_rebalance_plans_total", family_type::counter, "Rebalance plans started.");
  w.sample("wslb_rebalance_plans_total", "", t.header.rebalance_plans.load(relaxed));
  const std::size_t backends = shm::backend_rows_in_use(t);
  const auto in_plan = [&](const shm::backend_row& r) {
    return backend_shown(r) &&
           (r.rebalance_surplus.load(relaxed) != 0 || r.shed_rate_milli.load(relaxed) != 0);
  };
  w.family("wslb_backend_rebalance_target", family_type::gauge,
           "The backend's target under the current rebalance plan (N x weight / sum of weights).");
  w.family("wslb_backend_rebalance_surplus", family_type::gauge,
           "Connections the current rebalance plan was to shed from the backend.");
  w.family("wslb_backend_rebalance_shed", family_type::gauge,
           "Connections shed from the backend since the current rebalance plan began.");
  for (std::size_t b = 0; b < backends; ++b) {
    const shm::backend_row& r = t.backends[b];
    if (!in_plan(r)) continue;
    const std::uint64_t shed = shm::sum_shed(t, b);
    const std::uint64_t base = r.rebalance_shed_base.load(relaxed);
    w.sample("wslb_backend_rebalance_target", backend_label(r), r.rebalance_target.load(relaxed));
    w.sample("wslb_backend_rebalance_surplus", backend_label(r), r.rebalance_surplus.load(relaxed));
    w.sample("wslb_backend_rebalance_shed", backend_label(r), shed > base ? shed - base : 0);
  }
  w.family("wslb_backend_evacuation_remaining", family_type::gauge,
           "Live connections of a backend being evacuated.");
  for (std::size_t b = 0; b < backends; ++b) {
    const shm::backend_row& r = t.backends[b];
    if (!backend_shown(r) || r.evacuate_end_ms.load(relaxed) == 0) continue;
    w.sample("wslb_backend_evacuation_remaining", backend_label(r), shm::sum_active(t, b));
  }
}

}  // namespace

std::string render_metrics(const shm::table& t, const master_counters& master,
                           metrics_format format, std::int64_t now_unix_ms) {
  metrics_writer w(format);
  const std::size_t backends = shm::backend_rows_in_use(t);
  const std::size_t slots = shm::worker_rows_in_use(t);
  shm::backend_totals sums[shm::max_backends];
  for (std::size_t b = 0; b < backends; ++b) {
    if (backend_shown(t.backends[b])) sums[b] = shm::sum_backend(t, b);
  }
  const auto each_backend = [&](auto&& emit) {
    for (std::size_t b = 0; b < backends; ++b) {
      if (backend_shown(t.backends[b])) emit(t.backends[b], sums[b]);
    }
  };

  w.family("wslb_backend_connections", family_type::gauge,
           "Live connections to the backend, summed over every worker of every generation.");
  each_backend([&](const shm::backend_row& row, const shm::backend_totals& s) {
    w.sample("wslb_backend_connections", backend_label(row), s.active);
  });
  w.family("wslb_backend_up", family_type::gauge, "1 when the health checks hold the backend up.");
  each_backend([&](const shm::backend_row& row, const shm::backend_totals&) {
    w.sample("wslb_backend_up", backend_label(row), row.healthy.load(relaxed) ? 1 : 0);
  });
  w.family("wslb_backend_admin_state", family_type::gauge,
           "The operator's state of the backend: 1 for the state it is in.");
  each_backend([&](const shm::backend_row& row, const shm::backend_totals&) {
    const std::string current = admin_state_of(row);
    for (const char* state : admin_states) {
      w.sample("wslb_backend_admin_state",
               backend_label(row) + ",state=\"" + state + "\"", current == state ? 1 : 0);
    }
  });
  w.family("wslb_backend_weight", family_type::gauge, "The backend's weight.");
  each_backend([&](const shm::backend_row& row, const shm::backend_totals&) {
    w.sample("wslb_backend_weight", backend_label(row), row.weight.load(relaxed));
  });
  w.family("wslb_backend_connect_failures_total", family_type::counter,
           "Connects to the backend that failed or timed out.");
  each_backend([&](const shm::backend_row& row, const shm::backend_totals& s) {
    w.sample("wslb_backend_connect_failures_total", backend_label(row), s.failures);
  });
  w.family("wslb_bytes_total", family_type::counter,
           "Bytes relayed: direction in is client to backend, out is backend to client.");
  each_backend([&](const shm::backend_row& row, const shm::backend_totals& s) {
    w.sample("wslb_bytes_total", backend_label(row) + ",direction=\"in\"", s.bytes_in);
    w.sample("wslb_bytes_total", backend_label(row) + ",direction=\"out\"", s.bytes_out);
  });
  w.family("wslb_connections_total", family_type::counter,
           "Finished connections by backend and kind (websocket, http, tcp).");
  constexpr const char* kinds[shm::connection_kinds] = {"websocket", "http", "tcp"};
  for (std::size_t b = 0; b < backends; ++b) {
    if (!backend_shown(t.backends[b])) continue;
    for (std::size_t k = 0; k < shm::connection_kinds; ++k) {
      w.sample("wslb_connections_total",
               backend_label(t.backends[b]) + ",kind=\"" + kinds[k] + "\"", shm::sum_kind(t, b, k));
    }
  }
  w.family("wslb_closes_total", family_type::counter,
           "Connections ended, by cause: client, backend, drain, timeout, error, rebalance, "
           "evacuate.");
  for (std::size_t c = 0; c < shm::close_causes; ++c) {
    w.sample("wslb_closes_total", std::string("cause=\"") + shm::close_cause_names[c] + "\"",
             shm::sum_closes(t, c));
  }
  w.family("wslb_responses_total", family_type::counter,
           "Answers wslb wrote itself to clients, by HTTP status code.");
  for (const response_code& r : own_responses) {
    w.sample("wslb_responses_total", std::string("code=\"") + r.code + "\"",
             shm::sum_errors(t, static_cast<std::size_t>(r.kind)));
  }
  w.family("wslb_worker_connections", family_type::gauge,
           "Live client connections of the worker in this slot.");
  for (std::size_t s = 0; s < slots; ++s) {
    const shm::worker_row& row = t.workers[s];
    if (row.state.load(relaxed) == shm::worker_state::empty) continue;
    w.sample("wslb_worker_connections", "slot=\"" + std::to_string(s) + "\"",
             row.connections.load(relaxed));
  }
  w.family("wslb_reloads_total", family_type::counter,
           "Reloads asked of the master, by result (ok, failed).");
  w.sample("wslb_reloads_total", "result=\"ok\"", master.reloads_ok);
  w.sample("wslb_reloads_total", "result=\"failed\"", master.reloads_failed);
  w.histogram("wslb_handshake_duration_seconds",
              "From accept to the 101 relayed to the client (WebSocket upgrades).",
              shm::latency_bounds_us, shm::sum_histograms(t, &shm::worker_row::handshake));
  w.histogram("wslb_backend_connect_duration_seconds", "Backend connects that succeeded.",
              shm::latency_bounds_us, shm::sum_histograms(t, &shm::worker_row::backend_connect));
  w.histogram("wslb_connection_duration_seconds", "Client connections, accept to close.",
              shm::lifetime_bounds_us, shm::sum_histograms(t, &shm::worker_row::lifetime));
  write_cluster(w, t, now_unix_ms);
  write_shaping(w, t);
  return w.finish();
}

}  // namespace wslb::supervisor
