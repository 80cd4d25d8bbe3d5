#include <doctest/doctest.h>

#include "tests/unit/table_image.h"

#include "shm/table_ops.h"
#include "supervisor/metrics_text.h"

using namespace wslb;
using supervisor::metrics_format;

namespace {
std::unique_ptr<shm::table> sample_table() {
  auto t = testing::fresh_table();
  t->header.slot_high_water = 3;
  t->header.backend_high_water = 2;
  for (int s = 0; s < 2; ++s) t->workers[s].state = shm::worker_state::running;
  // Slot 2 is empty: it has no series.
  t->backends[0].state = shm::backend_state::active;
  t->backends[0].weight = 3;
  t->backends[0].healthy = 1;
  shm::copy_fixed(t->backends[0].address, shm::address_chars, "127.0.0.1:9001");
  t->backends[1].state = shm::backend_state::removed;
  t->backends[1].weight = 1;
  shm::copy_fixed(t->backends[1].address, shm::address_chars, "app\"1\\:80");
  t->workers[0].backends[0].active = 2;
  t->workers[1].backends[0].active = 5;
  t->workers[0].connections = 2;
  t->workers[1].connections = 5;
  t->workers[1].backends[0].bytes_in = 100;
  t->backends[0].retired_bytes_in = 11;
  t->workers[0].errors[static_cast<int>(shm::error_kind::no_backend_503)] = 4;
  return t;
}
bool has(const std::string& text, const std::string& line) {
  return text.find(line + "\n") != std::string::npos;
}
}  // namespace

TEST_CASE("metrics_text.sums_rows_per_backend_and_worker") {
  auto t = sample_table();
  const std::string m =
      supervisor::render_metrics(*t, {2, 1}, metrics_format::prometheus_text, 0);
  CHECK(has(m, "wslb_backend_connections{backend=\"127.0.0.1:9001\"} 7"));
  CHECK(has(m, "wslb_backend_weight{backend=\"127.0.0.1:9001\"} 3"));
  CHECK(has(m, "wslb_backend_up{backend=\"127.0.0.1:9001\"} 1"));
  CHECK(has(m, "wslb_bytes_total{backend=\"127.0.0.1:9001\",direction=\"in\"} 111"));
  CHECK(has(m, "wslb_worker_connections{slot=\"1\"} 5"));
  CHECK(m.find("slot=\"2\"") == std::string::npos);
  CHECK(has(m, "wslb_responses_total{code=\"503\"} 4"));
  CHECK(has(m, "wslb_reloads_total{result=\"ok\"} 2"));
  CHECK(has(m, "wslb_reloads_total{result=\"failed\"} 1"));
  CHECK(has(m, "# TYPE wslb_bytes_total counter"));
  CHECK(m.find("# EOF") == std::string::npos);
}

TEST_CASE("metrics_text.admin_state_is_one_hot_and_labels_are_escaped") {
  auto t = sample_table();
  const std::string m = supervisor::render_metrics(*t, {}, metrics_format::prometheus_text, 0);
  CHECK(has(m, "wslb_backend_admin_state{backend=\"127.0.0.1:9001\",state=\"ready\"} 1"));
  CHECK(has(m, "wslb_backend_admin_state{backend=\"127.0.0.1:9001\",state=\"drain\"} 0"));
  CHECK(has(m, "wslb_backend_admin_state{backend=\"app\\\"1\\\\:80\",state=\"drain\"} 1"));
}

TEST_CASE("metrics_text.openmetrics_names_counter_families_without_total_and_ends_with_eof") {
  auto t = sample_table();
  const std::string m = supervisor::render_metrics(*t, {}, metrics_format::openmetrics, 0);
  CHECK(has(m, "# TYPE wslb_bytes counter"));
  CHECK(has(m, "wslb_bytes_total{backend=\"127.0.0.1:9001\",direction=\"in\"} 111"));
  CHECK(m.size() > 6);
  CHECK(m.substr(m.size() - 6) == "# EOF\n");
  CHECK(supervisor::metrics_format_for("application/openmetrics-text; version=1.0.0") ==
        metrics_format::openmetrics);
  CHECK(supervisor::metrics_format_for("text/plain") == metrics_format::prometheus_text);
  CHECK(supervisor::metrics_format_for("") == metrics_format::prometheus_text);
}

TEST_CASE("metrics_text.histograms_are_cumulative_summed_over_rows_and_in_seconds") {
  auto t = sample_table();
  shm::observe(t->workers[0].handshake, shm::latency_bounds_us, 400);      // <= 0.5 ms
  shm::observe(t->workers[1].handshake, shm::latency_bounds_us, 500);      // <= 0.5 ms (inclusive)
  shm::observe(t->workers[1].handshake, shm::latency_bounds_us, 3'000);    // <= 5 ms
  shm::observe(t->workers[0].handshake, shm::latency_bounds_us, 60'000'000);  // above 10 s
  shm::observe(t->workers[0].lifetime, shm::lifetime_bounds_us, 7'200'000'000);  // 2 h
  t->workers[1].closes[static_cast<int>(shm::close_cause::drain)] = 3;
  t->workers[0].backends[0].kinds[static_cast<int>(shm::connection_kind_index::websocket)] = 2;
  t->backends[0].retired_kinds[static_cast<int>(shm::connection_kind_index::websocket)] = 1;
  const std::string m = supervisor::render_metrics(*t, {}, metrics_format::prometheus_text, 0);
  CHECK(has(m, "# TYPE wslb_handshake_duration_seconds histogram"));
  CHECK(has(m, "wslb_handshake_duration_seconds_bucket{le=\"0.0005\"} 2"));
  CHECK(has(m, "wslb_handshake_duration_seconds_bucket{le=\"0.0025\"} 2"));
  CHECK(has(m, "wslb_handshake_duration_seconds_bucket{le=\"0.005\"} 3"));
  CHECK(has(m, "wslb_handshake_duration_seconds_bucket{le=\"10\"} 3"));
  CHECK(has(m, "wslb_handshake_duration_seconds_bucket{le=\"+Inf\"} 4"));
  CHECK(has(m, "wslb_handshake_duration_seconds_count 4"));
  CHECK(has(m, "wslb_handshake_duration_seconds_sum 60.0039"));
  CHECK(has(m, "wslb_connection_duration_seconds_bucket{le=\"3600\"} 0"));
  CHECK(has(m, "wslb_connection_duration_seconds_bucket{le=\"14400\"} 1"));
  CHECK(has(m, "wslb_connection_duration_seconds_bucket{le=\"604800\"} 1"));
  CHECK(has(m, "wslb_closes_total{cause=\"drain\"} 3"));
  CHECK(has(m, "wslb_connections_total{backend=\"127.0.0.1:9001\",kind=\"websocket\"} 3"));
  CHECK(has(m, "wslb_connections_total{backend=\"127.0.0.1:9001\",kind=\"tcp\"} 0"));
}

TEST_CASE("metrics_text.shows_the_rebalance_plan_its_progress_and_evacuations") {
  auto t = sample_table();
  auto m = supervisor::render_metrics(*t, {}, metrics_format::prometheus_text, 0);
  CHECK(has(m, "wslb_rebalance_running 0"));
  CHECK(has(m, "wslb_rebalance_plans_total 0"));
  CHECK(m.find("wslb_backend_rebalance_target{") == std::string::npos);  // no plan, no series
  CHECK(m.find("wslb_backend_evacuation_remaining{") == std::string::npos);
  // A plan: target 4 and a surplus of 3 for backend 0, whose workers had shed 10 before it
  // began and 12 now; and the backend is being evacuated.
  t->header.rebalance_running = 1;
  t->header.rebalance_plans = 2;
  t->backends[0].rebalance_target = 4;
  t->backends[0].rebalance_surplus = 3;
  t->backends[0].shed_rate_milli = 1000;
  t->backends[0].rebalance_shed_base = 10;
  t->workers[0].backends[0].shed = 5;
  t->workers[1].backends[0].shed = 7;
  t->backends[0].evacuate_end_ms = 1;
  m = supervisor::render_metrics(*t, {}, metrics_format::prometheus_text, 0);
  CHECK(has(m, "wslb_rebalance_running 1"));
  CHECK(has(m, "wslb_rebalance_plans_total 2"));
  CHECK(has(m, "wslb_backend_rebalance_target{backend=\"127.0.0.1:9001\"} 4"));
  CHECK(has(m, "wslb_backend_rebalance_surplus{backend=\"127.0.0.1:9001\"} 3"));
  CHECK(has(m, "wslb_backend_rebalance_shed{backend=\"127.0.0.1:9001\"} 2"));
  CHECK(has(m, "wslb_backend_evacuation_remaining{backend=\"127.0.0.1:9001\"} 7"));
  CHECK(m.find("wslb_backend_rebalance_target{backend=\"app") == std::string::npos);
}
