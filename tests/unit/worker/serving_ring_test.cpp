#include <doctest/doctest.h>

#include "tests/unit/table_image.h"

#include <map>
#include <string>
#include <vector>

#include "common/parse.h"
#include "shm/table_ops.h"
#include "worker/backend_picker.h"
#include "worker/serving_ring.h"

using namespace wslb;
using namespace wslb::worker;

namespace {
using wslb::testing::fresh_table;

// Backend i is 127.0.0.1:(9001 + i) in table row i, active and healthy, with its address in
// the row as the master writes it.
backend_config add_backend(shm::table& t, std::size_t i, std::uint32_t weight = 1) {
  backend_config b;
  std::string error;
  REQUIRE(parse_endpoint("127.0.0.1:" + std::to_string(9001 + i), b.where, error));
  b.weight = weight;
  b.row = i;
  shm::backend_row& r = t.backends[i];
  shm::copy_fixed(r.address, shm::address_chars, b.where.to_string());
  r.state = shm::backend_state::active;
  r.healthy = 1;
  r.weight = weight;
  if (t.header.backend_high_water.load() < i + 1) t.header.backend_high_water = static_cast<std::uint32_t>(i + 1);
  return b;
}

std::uint64_t key(int k) { return hash_key("room-" + std::to_string(k)); }

}  // namespace

TEST_CASE("serving_ring.answers_for_the_serving_generation_not_an_older_one") {
  auto t = fresh_table();
  // Generation 1 was configured with A and B; a reload added C (row 2, now active) and
  // generation 2 has all three.
  std::vector<backend_config> old_cfg{add_backend(*t, 0), add_backend(*t, 1)};
  std::vector<backend_config> new_cfg = old_cfg;
  new_cfg.push_back(add_backend(*t, 2));
  backend_picker old_picker(old_cfg, balance_mode::query);
  backend_picker new_picker(new_cfg, balance_mode::query);
  serving_ring serving;
  int to_c = 0;
  for (int k = 0; k < 600; ++k) {
    const auto row = serving.row_for(*t, key(k));
    REQUIRE(row);
    // The serving generation places every key where the ring says.
    CHECK(new_cfg[new_picker.pick(*t, 0, key(k))].row == *row);
    // The old generation's own ring still has its A/B choice: only keys that moved to C
    // differ from it.
    const std::size_t old_row = old_cfg[old_picker.pick(*t, 0, key(k))].row;
    if (*row != old_row) {
      CHECK(*row == 2);
      ++to_c;
    }
  }
  CHECK(to_c > 120);
  CHECK(to_c < 280);
}

TEST_CASE("serving_ring.follows_health_weight_and_row_state") {
  auto t = fresh_table();
  std::vector<backend_config> cfg{add_backend(*t, 0), add_backend(*t, 1), add_backend(*t, 2)};
  backend_picker picker(cfg, balance_mode::header);
  serving_ring serving;
  std::map<int, std::size_t> first;
  for (int k = 0; k < 400; ++k) first[k] = *serving.row_for(*t, key(k));

  // A runtime weight change (`wslb backend weight`) moves keys in both alike, and only onto
  // the reweighted backend.
  t->backends[2].weight = 3;
  int moved = 0;
  for (auto& [k, row] : first) {
    const std::size_t now = *serving.row_for(*t, key(k));
    CHECK(cfg[picker.pick(*t, 0, key(k))].row == now);
    if (now != row) {
      CHECK(now == 2);
      ++moved;
    }
  }
  CHECK(moved > 50);
  t->backends[2].weight = 1;

  // Down, evacuating or in maintenance: its keys go elsewhere; the others stay.
  for (auto change : {+[](shm::backend_row& r) { r.healthy = 0; },
                      +[](shm::backend_row& r) { r.evacuate_end_ms = 1; },
                      +[](shm::backend_row& r) { r.admin = shm::admin_state::maint; }}) {
    change(t->backends[1]);
    for (auto& [k, row] : first) {
      const std::size_t now = *serving.row_for(*t, key(k));
      if (row == 1) CHECK(now != 1);
      else CHECK(now == row);
    }
    t->backends[1].healthy = 1;
    t->backends[1].evacuate_end_ms = 0;
    t->backends[1].admin = shm::admin_state::ready;
  }

  // A staged row (a reload not yet committed) and a removed one are not in the serving
  // configuration.
  t->backends[1].state = shm::backend_state::staged;
  for (auto& [k, row] : first) CHECK(*serving.row_for(*t, key(k)) != 1);
  t->backends[1].state = shm::backend_state::removed;
  for (auto& [k, row] : first) CHECK(*serving.row_for(*t, key(k)) != 1);

  // Nothing takes new connections: no answer (the shedder then sheds nobody).
  for (std::size_t i = 0; i < 3; ++i) t->backends[i].healthy = 0;
  CHECK_FALSE(serving.row_for(*t, key(1)).has_value());
}
