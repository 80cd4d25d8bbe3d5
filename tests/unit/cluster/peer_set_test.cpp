#include <doctest/doctest.h>

#include "cluster/peer_set.h"
#include "shm/cluster_view.h"
#include "shm/table_ops.h"
#include "tests/unit/table_image.h"

using namespace wslb;
using namespace wslb::cluster;

namespace {

std::unique_ptr<shm::table> table_with(std::vector<const char*> addresses) {
  auto t = testing::fresh_table();
  t->header.backend_high_water = static_cast<std::uint32_t>(addresses.size());
  t->header.slot_high_water = 1;
  for (std::size_t b = 0; b < addresses.size(); ++b) {
    shm::copy_fixed(t->backends[b].address, shm::address_chars, addresses[b]);
    t->backends[b].state = shm::backend_state::active;
  }
  return t;
}

node_snapshot snap(const char* id, std::uint64_t boot, std::uint64_t seq,
                   std::vector<std::pair<std::string, std::uint64_t>> counts) {
  return node_snapshot{id, boot, seq, 0, std::move(counts)};
}

}  // namespace

TEST_CASE("peer_set.sums_other_nodes_by_configured_address") {
  auto t = table_with({"10.0.0.1:80", "10.0.0.2:80"});
  peer_set peers("a");
  peers.on_round({snap("b", 1, 1, {{"10.0.0.1:80", 100}, {"10.0.0.9:80", 50}}),
                  snap("c", 2, 1, {{"10.0.0.1:80", 5}, {"10.0.0.2:80", 7}}),
                  snap("a", 3, 1, {{"10.0.0.1:80", 1000}})},  // our own: never counted
                 1000);
  peers.publish(*t, "");
  CHECK(t->backends[0].cluster_active == 105);
  CHECK(t->backends[1].cluster_active == 7);  // 10.0.0.9:80 is not ours: ignored
  t->workers[0].backends[1].active = 3;
  CHECK(shm::tier_active(*t, 1) == 10);
  const auto view = shm::read_cluster_view(*t);
  REQUIRE(view.peers.size() == 2);
  CHECK(std::string(view.peers[0].node_id) == "b");
  CHECK(view.peers[0].connections == 150);
  CHECK(view.peers[0].seen_ms == 1000);
}

TEST_CASE("peer_set.a_node_missing_from_a_round_is_gone") {
  auto t = table_with({"10.0.0.1:80"});
  peer_set peers("a");
  peers.on_round({snap("b", 1, 1, {{"10.0.0.1:80", 100}}), snap("c", 1, 1, {{"10.0.0.1:80", 1}})}, 0);
  peers.on_round({snap("c", 1, 2, {{"10.0.0.1:80", 2}})}, 500);  // b's key expired
  peers.publish(*t, "");
  CHECK(peers.size() == 1);
  CHECK(t->backends[0].cluster_active == 2);
}

TEST_CASE("peer_set.figures_age_out_without_rounds") {
  auto t = table_with({"10.0.0.1:80"});
  peer_set peers("a");
  peers.on_round({snap("b", 1, 1, {{"10.0.0.1:80", 100}})}, 1000);
  // An unchanged seq does not refresh the age: a stalled node ages like a silent one.
  peers.on_round({snap("b", 1, 1, {{"10.0.0.1:80", 100}})}, 2000);
  peers.expire(2500, 1500);
  CHECK(peers.size() == 1);
  peers.expire(2501, 1500);
  CHECK(peers.size() == 0);
  peers.publish(*t, "connect: Connection refused");
  CHECK(t->backends[0].cluster_active == 0);
  CHECK(shm::read_cluster_view(*t).last_error == "connect: Connection refused");
}

TEST_CASE("peer_set.a_restarted_node_replaces_its_old_self") {
  auto t = table_with({"10.0.0.1:80"});
  peer_set peers("a");
  peers.on_round({snap("b", 1, 900, {{"10.0.0.1:80", 100}})}, 1000);
  peers.on_round({snap("b", 2, 1, {{"10.0.0.1:80", 3}})}, 1500);  // new boot, seq from 1
  peers.publish(*t, "");
  CHECK(t->backends[0].cluster_active == 3);
  CHECK(shm::read_cluster_view(*t).peers[0].seen_ms == 1500);
}

TEST_CASE("cluster_view.master_clears_a_dead_agents_figures") {
  auto t = table_with({"10.0.0.1:80"});
  peer_set peers("a");
  peers.on_round({snap("b", 1, 1, {{"10.0.0.1:80", 100}})}, 1000);
  peers.publish(*t, "");
  shm::set_cluster_link(*t, shm::cluster_link::connected, 1000);
  shm::clear_cluster_view(*t, 2000);
  CHECK(t->backends[0].cluster_active == 0);
  CHECK(shm::read_cluster_view(*t).peers.empty());
  CHECK(t->cluster.link == shm::cluster_link::connecting);
  CHECK(t->cluster.link_since_ms == 2000);
}
