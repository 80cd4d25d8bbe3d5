#include <doctest/doctest.h>

#include "shm/cluster_view.h"
#include "shm/table_ops.h"
#include "supervisor/metrics_text.h"
#include "tests/unit/table_image.h"

using namespace wslb;
using supervisor::metrics_format;

TEST_CASE("metrics_text.cluster_nodes_and_peer_ages") {
  auto t = testing::fresh_table();
  t->header.backend_high_water = 1;
  t->backends[0].state = shm::backend_state::active;
  shm::copy_fixed(t->backends[0].address, shm::address_chars, "10.0.0.1:80");
  t->backends[0].cluster_active = 40;
  // Without --cluster there is no cluster family at all.
  CHECK(supervisor::render_metrics(*t, {}, metrics_format::prometheus_text, 10'000)
            .find("wslb_cluster") == std::string::npos);

  shm::copy_fixed(t->cluster.node_id, shm::name_chars, "web-a");
  shm::set_cluster_link(*t, shm::cluster_link::connected, 5'000);
  shm::cluster_peer b{}, c{};
  shm::copy_fixed(b.node_id, shm::name_chars, "web-b");
  b.seen_ms = 9'750;
  shm::copy_fixed(c.node_id, shm::name_chars, "web-\"c");
  c.seen_ms = 8'000;
  shm::write_cluster_view(*t, {b, c}, "");
  const std::string m = supervisor::render_metrics(*t, {}, metrics_format::openmetrics, 10'000);
  CHECK(m.find("# TYPE wslb_cluster_nodes gauge\n") != std::string::npos);
  CHECK(m.find("\nwslb_cluster_nodes 2\n") != std::string::npos);
  CHECK(m.find("\nwslb_cluster_peer_age_seconds{node=\"web-b\"} 0.25\n") != std::string::npos);
  CHECK(m.find("\nwslb_cluster_peer_age_seconds{node=\"web-\\\"c\"} 2\n") != std::string::npos);
  CHECK(m.find("\nwslb_cluster_connected 1\n") != std::string::npos);
  CHECK(m.find("wslb_backend_cluster_connections{backend=\"10.0.0.1:80\"} 40\n") !=
        std::string::npos);
  CHECK(m.rfind("# EOF\n") == m.size() - 6);
}
