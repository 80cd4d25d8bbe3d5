#include <doctest/doctest.h>

#include "cli/cluster_status.h"
#include "cli/status_view.h"
#include "shm/cluster_view.h"
#include "shm/table_ops.h"
#include "tests/unit/table_image.h"

using namespace wslb;

namespace {
std::unique_ptr<shm::table> clustered_table() {
  auto t = testing::fresh_table();
  t->header.backend_high_water = 1;
  t->header.slot_high_water = 1;
  t->workers[0].state = shm::worker_state::running;
  t->backends[0].state = shm::backend_state::active;
  shm::copy_fixed(t->backends[0].address, shm::address_chars, "10.0.0.1:80");
  t->workers[0].backends[0].active = 3;
  t->backends[0].cluster_active = 40;
  shm::copy_fixed(t->cluster.node_id, shm::name_chars, "web-a");
  shm::copy_fixed(t->cluster.redis, shm::address_chars, "10.0.0.9:6379/0");
  t->cluster.interval_ms = 500;
  t->cluster.pid = 77;
  t->cluster.last_round_ms = 9'800;
  shm::set_cluster_link(*t, shm::cluster_link::connected, 5'000);
  shm::cluster_peer b{};
  shm::copy_fixed(b.node_id, shm::name_chars, "web-b");
  b.seen_ms = 9'700;
  b.connections = 40;
  shm::write_cluster_view(*t, {b}, "");
  return t;
}
}  // namespace

TEST_CASE("status.cluster_json_shows_link_nodes_and_tier_counts") {
  auto t = clustered_table();
  const std::string j = cli::render_status_json(*t, 10'000);
  CHECK(j.find("\"active\":3,") != std::string::npos);
  CHECK(j.find("\"cluster_active\":40,\"tier_active\":43") != std::string::npos);
  CHECK(j.find("\"cluster\":{\"enabled\":true,\"node_id\":\"web-a\",\"redis\":\"10.0.0.9:6379/0\","
               "\"link\":\"connected\",\"link_for_ms\":5000,\"last_exchange_ms_ago\":200") !=
        std::string::npos);
  CHECK(j.find("\"nodes_seen\":1,\"nodes\":[{\"node_id\":\"web-b\",\"age_ms\":300,"
               "\"connections\":40}]") != std::string::npos);
}

TEST_CASE("status.cluster_text_and_its_absence") {
  auto t = clustered_table();
  shm::set_cluster_link(*t, shm::cluster_link::unreachable, 9'000);
  shm::write_cluster_view(*t, {}, "connect: Connection refused");
  const std::string text = cli::render_status_text(*t, 10'000);
  CHECK(text.find("other nodes 40, tier-wide 43") != std::string::npos);
  CHECK(text.find("CLUSTER node web-a  redis 10.0.0.9:6379/0  unreachable for 1 s") !=
        std::string::npos);
  CHECK(text.find("last error: connect: Connection refused") != std::string::npos);
  CHECK(text.find("(none seen)") != std::string::npos);

  auto plain = testing::fresh_table();
  CHECK(cli::render_status_json(*plain, 0).find("\"cluster\":{\"enabled\":false}") !=
        std::string::npos);
  CHECK(cli::render_status_text(*plain, 0).find("CLUSTER") == std::string::npos);
}
