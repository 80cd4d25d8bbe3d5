// Rendering the Prometheus metrics of an instance from a table image. Pure: reads the table
// (and the master's own counters), writes a string; the cost is one pass over the backend and
// worker rows, whatever the number of connections. Names and labels are a contract: add
// freely, never rename or drop (README "Metrics").
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "shm/layout.h"

namespace wslb::supervisor {

enum class metrics_format { prometheus_text, openmetrics };

// What only the master knows, counted in its own memory.
struct master_counters {
  std::uint64_t reloads_ok = 0;
  std::uint64_t reloads_failed = 0;
};

// OpenMetrics when the scraper's Accept header asks for it, else the Prometheus text format.
metrics_format metrics_format_for(std::string_view accept);
// The Content-Type that goes with `format`.
const char* metrics_content_type(metrics_format format);

// `now_unix_ms` dates the cluster peers' snapshots (wslb_cluster_peer_age_seconds).
std::string render_metrics(const shm::table& t, const master_counters& master,
                           metrics_format format, std::int64_t now_unix_ms);

}  // namespace wslb::supervisor
