#include <doctest/doctest.h>

#include "tests/unit/table_image.h"

#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "common/parse.h"
#include "shm/table_ops.h"
#include "worker/backend_picker.h"
#include "worker/backend_set.h"

using namespace wslb;
using namespace wslb::worker;
using wslb::testing::fresh_table;

namespace {

// Writes a backend into row `row` as the master does (address, socket address, weight), in
// `state`.
backend_config put_row(shm::table& t, std::size_t row, const std::string& text,
                       shm::backend_state state, std::uint32_t weight = 1) {
  backend_config b;
  std::string error;
  REQUIRE(parse_backend(text, b, error));
  b.weight = weight;
  b.row = row;
  auto& r = t.backends[row];
  shm::copy_fixed(r.address, shm::address_chars, b.where.to_string());
  std::memcpy(r.sockaddr_bytes, &b.where.addr, b.where.addr_len);
  r.sockaddr_len = b.where.addr_len;
  r.weight = weight;
  r.healthy = 1;
  r.state = state;
  if (t.header.backend_high_water.load() < row + 1) {
    t.header.backend_high_water = static_cast<std::uint32_t>(row + 1);
  }
  return b;
}

}  // namespace

TEST_CASE("backend_set.takes_an_active_row_it_lacks_with_the_rows_settings") {
  auto t = fresh_table();
  std::vector<backend_config> mine{put_row(*t, 0, "127.0.0.1:9001", shm::backend_state::active)};
  put_row(*t, 1, "127.0.0.1:9003", shm::backend_state::active, 7);
  t->backends[1].maxconn = 5;
  put_row(*t, 2, "127.0.0.1:9004", shm::backend_state::staged);  // a pending reload's
  const backend_set_change c = compare_with_table(*t, mine, 0, true);
  CHECK(c.retire == 0);
  REQUIRE(c.adopt.size() == 1);
  CHECK(c.adopt[0].where.to_string() == "127.0.0.1:9003");
  CHECK(c.adopt[0].row == 1);
  CHECK(c.adopt[0].weight == 7);
  CHECK(c.adopt[0].maxconn == 5);
  CHECK(c.adopt[0].where.addr_len == sizeof(sockaddr_in));
  CHECK(c.adopt[0].where.address_text() == "127.0.0.1");
  // A generation that does not serve takes nothing: its configuration is the reload's.
  CHECK(compare_with_table(*t, mine, 0, false).adopt.empty());
}

TEST_CASE("backend_set.retires_an_entry_whose_row_was_freed_or_given_to_another") {
  auto t = fresh_table();
  std::vector<backend_config> mine{put_row(*t, 0, "127.0.0.1:9001", shm::backend_state::active),
                                   put_row(*t, 1, "127.0.0.1:9002", shm::backend_state::active),
                                   put_row(*t, 2, "[::1]:9003", shm::backend_state::active)};
  // Removed but still draining: it keeps its entry (its connections, its evacuation).
  t->backends[0].state = shm::backend_state::removed;
  CHECK(compare_with_table(*t, mine, 0, true).retire == 0);
  t->backends[0].state = shm::backend_state::empty;
  put_row(*t, 1, "127.0.0.1:9005", shm::backend_state::active);
  const backend_set_change c = compare_with_table(*t, mine, 0, true);
  CHECK(c.retire == 0b011);
  // Row 1 holds another backend now: it is taken as a new one.
  REQUIRE(c.adopt.size() == 1);
  CHECK(c.adopt[0].where.to_string() == "127.0.0.1:9005");
  // An IPv6 backend's text comes back as it went in.
  CHECK(mine[2].where.to_string() == "[::1]:9003");
  put_row(*t, 4, "[::1]:9006", shm::backend_state::active);
  const backend_set_change v6 = compare_with_table(*t, mine, 0b011, true);
  REQUIRE(v6.adopt.size() == 2);
  CHECK(v6.adopt[1].where.to_string() == "[::1]:9006");
  CHECK(v6.adopt[1].where.port == 9006);
}

TEST_CASE("backend_set.an_index_is_reused_only_when_no_session_holds_it") {
  CHECK(index_for_adopted(3, 0, 0) == 3);
  CHECK(index_for_adopted(3, 0b010, 0) == 1);
  CHECK(index_for_adopted(3, 0b010, 0b010) == 3);
  CHECK(index_for_adopted(3, 0b110, 0b010) == 2);
  CHECK(index_for_adopted(shm::max_backends, 0, 0) == shm::max_backends);
}

TEST_CASE("backend_set.a_retired_entry_is_never_picked_nor_on_the_sticky_ring") {
  auto t = fresh_table();
  std::vector<backend_config> mine{put_row(*t, 0, "127.0.0.1:9001", shm::backend_state::active),
                                   put_row(*t, 1, "127.0.0.1:9002", shm::backend_state::active)};
  // Row 0 went to another backend, which the worker took at index 2.
  mine.push_back(put_row(*t, 0, "127.0.0.1:9005", shm::backend_state::active));
  for (auto mode : {balance_mode::least_conn, balance_mode::round_robin, balance_mode::source_hash}) {
    backend_picker p(mine, mode);
    p.set_backends(mine, 0b001);
    CHECK_FALSE(p.eligible(*t, 0));
    for (std::uint64_t key = 0; key < 200; ++key) {
      const std::size_t i = p.pick(*t, 0, mode == balance_mode::source_hash
                                              ? std::optional<std::uint64_t>(key * 7919)
                                              : std::nullopt);
      CHECK(i != 0);
      CHECK(i != no_backend);
    }
  }
}
