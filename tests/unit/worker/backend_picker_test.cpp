#include <doctest/doctest.h>

#include "tests/unit/table_image.h"

#include <cstring>
#include <map>
#include <memory>

#include "common/parse.h"
#include "shm/table.h"
#include "worker/backend_picker.h"

using namespace wslb;
using namespace wslb::worker;

namespace {
using wslb::testing::fresh_table;

// `weights[i]` for backend i, placed in table row rows[i] (default: row i), active and healthy.
std::vector<backend_config> backends(shm::table& t, std::vector<std::uint32_t> weights,
                                     std::vector<std::size_t> rows = {}) {
  std::vector<backend_config> out;
  for (std::size_t i = 0; i < weights.size(); ++i) {
    backend_config b;
    std::string error;
    REQUIRE(parse_endpoint("127.0.0.1:" + std::to_string(9001 + i), b.where, error));
    b.weight = weights[i];
    b.row = rows.empty() ? i : rows[i];
    t.backends[b.row].state = shm::backend_state::active;
    t.backends[b.row].healthy = 1;
    t.backends[b.row].weight = b.weight;
    out.push_back(b);
  }
  return out;
}

void set_active(shm::table& t, std::size_t slot, std::size_t row, std::uint64_t n) {
  t.workers[slot].backends[row].active = n;
  if (t.header.slot_high_water.load() < slot + 1) t.header.slot_high_water = static_cast<std::uint32_t>(slot + 1);
}

// Picks like a worker in `slot` does: counts the pick in its row.
std::size_t pick_and_count(backend_picker& p, shm::table& t, const std::vector<backend_config>& b,
                           std::size_t slot) {
  const std::size_t i = p.pick(t, 0, std::nullopt);
  if (i != no_backend) t.workers[slot].backends[b[i].row].active.fetch_add(1);
  return i;
}

}  // namespace

TEST_CASE("picker.least_conn_sums_every_worker_row") {
  auto t = fresh_table();
  auto b = backends(*t, {1, 1});
  backend_picker p(b, balance_mode::least_conn);
  // Worker 0 alone would see backend 0 as emptier; summed over rows (an old generation in
  // slot 5 included) backend 1 is.
  set_active(*t, 0, 0, 1);
  set_active(*t, 0, 1, 3);
  set_active(*t, 5, 0, 4);
  CHECK(p.pick(*t, 0, std::nullopt) == 1);
}

TEST_CASE("picker.least_conn_weights_compared_crosswise") {
  auto t = fresh_table();
  auto b = backends(*t, {1, 3});
  backend_picker p(b, balance_mode::least_conn);
  set_active(*t, 0, 0, 2);  // 2 / 1
  set_active(*t, 1, 1, 5);  // 5 / 3 < 2 / 1
  CHECK(p.pick(*t, 0, std::nullopt) == 1);
  set_active(*t, 1, 1, 7);  // 7 / 3 > 2 / 1
  CHECK(p.pick(*t, 0, std::nullopt) == 0);
  // Filling from empty converges to the weights: 1:3.
  auto t2 = fresh_table();
  auto b2 = backends(*t2, {1, 3});
  backend_picker p2(b2, balance_mode::least_conn);
  t2->header.slot_high_water = 2;
  for (int i = 0; i < 400; ++i) pick_and_count(p2, *t2, b2, static_cast<std::size_t>(i % 2));
  const auto a0 = t2->workers[0].backends[0].active + t2->workers[1].backends[0].active;
  const auto a1 = t2->workers[0].backends[1].active + t2->workers[1].backends[1].active;
  CHECK(a0 == 100);
  CHECK(a1 == 300);
}

TEST_CASE("picker.least_conn_ties_rotate") {
  auto t = fresh_table();
  auto b = backends(*t, {1, 1, 1});
  backend_picker p(b, balance_mode::least_conn);
  t->header.slot_high_water = 1;
  // Nothing is counted between picks (as when several workers pick at the same instant):
  // the shared counter still spreads them.
  std::map<std::size_t, int> seen;
  for (int i = 0; i < 30; ++i) ++seen[p.pick(*t, 0, std::nullopt)];
  CHECK(seen[0] == 10);
  CHECK(seen[1] == 10);
  CHECK(seen[2] == 10);
  // Two pickers (two workers) sharing the table split equal backends evenly.
  auto t2 = fresh_table();
  auto b2 = backends(*t2, {1, 1});
  backend_picker w0(b2, balance_mode::least_conn), w1(b2, balance_mode::least_conn);
  t2->header.slot_high_water = 2;
  for (int i = 0; i < 100; ++i) {
    pick_and_count(w0, *t2, b2, 0);
    pick_and_count(w1, *t2, b2, 1);
  }
  CHECK(t2->workers[0].backends[0].active + t2->workers[1].backends[0].active == 100);
  CHECK(t2->workers[0].backends[1].active + t2->workers[1].backends[1].active == 100);
}

TEST_CASE("picker.round_robin_weighted_and_global") {
  auto t = fresh_table();
  auto b = backends(*t, {1, 2, 3});
  backend_picker w0(b, balance_mode::round_robin), w1(b, balance_mode::round_robin);
  std::map<std::size_t, int> seen;
  // Two workers alternating over one shared counter: every 6 turns give 1, 2, 3.
  for (int i = 0; i < 60; ++i) ++seen[(i % 2 ? w1 : w0).pick(*t, 0, std::nullopt)];
  CHECK(seen[0] == 10);
  CHECK(seen[1] == 20);
  CHECK(seen[2] == 30);
  CHECK(t->header.round_robin_next.load() == 60);
  // Turns of a heavy backend are spread, not in one block: weights 3:1 never give the light
  // backend twice in a row and the heavy one at most 3 times in a row.
  auto t2 = fresh_table();
  auto b2 = backends(*t2, {3, 1});
  backend_picker p(b2, balance_mode::round_robin);
  int run = 0, longest = 0;
  std::size_t prev = no_backend;
  for (int i = 0; i < 40; ++i) {
    const std::size_t x = p.pick(*t2, 0, std::nullopt);
    run = x == prev ? run + 1 : 1;
    if (x == 1) CHECK(run == 1);
    longest = std::max(longest, run);
    prev = x;
  }
  CHECK(longest <= 3);
}

TEST_CASE("picker.skips_down_removed_and_tried_backends") {
  auto t = fresh_table();
  auto b = backends(*t, {1, 1, 1});
  for (balance_mode mode : {balance_mode::least_conn, balance_mode::round_robin,
                            balance_mode::cookie}) {
    backend_picker p(b, mode);
    t->backends[0].healthy = 0;
    t->backends[1].state = shm::backend_state::removed;
    for (int i = 0; i < 10; ++i) CHECK(p.pick(*t, 0, std::uint64_t{42} + static_cast<std::uint64_t>(i)) == 2);
    CHECK(p.pick(*t, tried_set{1} << 2, std::nullopt) == no_backend);
    t->backends[2].healthy = 0;
    CHECK(p.pick(*t, 0, std::nullopt) == no_backend);
    t->backends[0].healthy = 1;
    t->backends[1].state = shm::backend_state::active;
    t->backends[2].healthy = 1;
  }
  backend_picker p(b, balance_mode::least_conn);
  CHECK(p.pick(*t, 0b011, std::nullopt) == 2);
  CHECK(p.pick(*t, 0b110, std::nullopt) == 0);
}

TEST_CASE("picker.sticky_keys_stay_and_move_only_with_their_backend") {
  auto t = fresh_table();
  auto b = backends(*t, {1, 1, 1}, {3, 7, 9});
  backend_picker p(b, balance_mode::header);
  std::map<std::uint64_t, std::size_t> first;
  for (std::uint64_t k = 0; k < 300; ++k) {
    const std::uint64_t key = hash_key("client-" + std::to_string(k));
    first[key] = p.pick(*t, 0, key);
    CHECK(p.pick(*t, 0, key) == first[key]);  // same key, same backend
  }
  std::map<std::size_t, int> per_backend;
  for (auto& [key, i] : first) ++per_backend[i];
  CHECK(per_backend.size() == 3);
  for (auto& [i, n] : per_backend) CHECK(n > 50);
  // Backend 1 goes down: only its keys move.
  t->backends[7].healthy = 0;
  for (auto& [key, i] : first) {
    const std::size_t now = p.pick(*t, 0, key);
    if (i != 1) CHECK(now == i);
    else CHECK(now != 1);
  }
  // Back up: every key is where it was.
  t->backends[7].healthy = 1;
  for (auto& [key, i] : first) CHECK(p.pick(*t, 0, key) == i);
  // No key: least-conn.
  set_active(*t, 0, 3, 5);
  set_active(*t, 0, 7, 5);
  CHECK(p.pick(*t, 0, std::nullopt) == 2);
  // The ring's choice already tried: the next pick falls back to least-conn over the others.
  const std::uint64_t key = first.begin()->first;
  const std::size_t owner = first.begin()->second;
  const std::size_t next = p.pick(*t, tried_set{1} << owner, key);
  CHECK(next != owner);
  CHECK(next != no_backend);
}

TEST_CASE("picker.least_conn_adds_the_other_nodes_counts") {
  auto t = fresh_table();
  auto b = backends(*t, {1, 2});
  backend_picker p(b, balance_mode::least_conn);
  // This node alone holds nothing; the tier holds 100 on backend 0 and 150 on backend 1 (of
  // weight 2): 100/1 > 150/2, so backend 1 is the emptier one tier-wide.
  t->backends[0].cluster_active = 100;
  t->backends[1].cluster_active = 150;
  CHECK(p.pick(*t, 0, std::nullopt) == 1);
  // Local exact counts add to the remote ones: 100 + 0 vs (150 + 60) / 2 = 105.
  set_active(*t, 0, 1, 60);
  CHECK(p.pick(*t, 0, std::nullopt) == 0);
  // Without remote figures (Redis gone, aged out) the local counts alone decide.
  t->backends[0].cluster_active = 0;
  t->backends[1].cluster_active = 0;
  set_active(*t, 0, 0, 40);
  CHECK(p.pick(*t, 0, std::nullopt) == 1);  // 40/1 > 60/2
}
