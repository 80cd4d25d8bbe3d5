#include <doctest/doctest.h>

#include "tests/unit/table_image.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include "shm/table_ops.h"
#include "worker/connection_limits.h"

using namespace wslb;
using namespace wslb::worker;

namespace {

sockaddr_storage v4(const char* ip, std::uint16_t port) {
  sockaddr_storage ss{};
  auto* in = reinterpret_cast<sockaddr_in*>(&ss);
  in->sin_family = AF_INET;
  in->sin_port = htons(port);
  inet_pton(AF_INET, ip, &in->sin_addr);
  return ss;
}

}  // namespace

TEST_CASE("connection_limits.sums_over_worker_rows") {
  auto t = testing::fresh_table();
  t->header.slot_high_water.store(3);
  t->workers[0].connections.store(4);
  t->workers[2].connections.store(5);
  t->workers[7].connections.store(100);  // beyond the high-water mark: not in use
  CHECK(instance_connections(*t) == 9);
}

TEST_CASE("connection_limits.sources_are_counted_per_address_over_every_row") {
  auto t = testing::fresh_table();
  t->header.slot_high_water.store(2);
  const std::uint64_t a = source_key(v4("192.0.2.1", 1000));
  CHECK(a == source_key(v4("192.0.2.1", 2000)));  // the port does not matter
  const std::uint64_t b = source_key(v4("192.0.2.2", 1000));
  CHECK(a != b);
  CHECK(add_source(t->workers[0], a));
  CHECK(add_source(t->workers[0], a));
  CHECK(add_source(t->workers[1], a));
  CHECK(add_source(t->workers[1], b));
  CHECK(source_connections(*t, a) == 3);
  CHECK(source_connections(*t, b) == 1);
  remove_source(t->workers[0], a);
  CHECK(source_connections(*t, a) == 2);
  remove_source(t->workers[1], b);
  CHECK(source_connections(*t, b) == 0);
  // A dead worker's row is cleared by the master: its sources go with it.
  shm::clear_worker_row(*t, 1);
  CHECK(source_connections(*t, a) == 1);
}

TEST_CASE("connection_limits.finished_sources_make_room_and_a_full_row_says_so") {
  auto t = testing::fresh_table();
  t->header.slot_high_water.store(1);
  shm::worker_row& row = t->workers[0];
  // Fill every slot with a live source.
  std::uint64_t key = 1;
  for (std::size_t i = 0; i < shm::source_slots; ++i, ++key) REQUIRE(add_source(row, key));
  CHECK_FALSE(add_source(row, key));  // full: not counted (not limited either)
  CHECK(source_connections(*t, key) == 0);
  // One finishes: its slot serves a new source, and the others are all still found.
  remove_source(row, 5);
  CHECK(add_source(row, key));
  CHECK(source_connections(*t, key) == 1);
  for (std::uint64_t k = 1; k <= shm::source_slots; ++k) {
    CHECK(source_connections(*t, k) == (k == 5 ? 0u : 1u));
  }
}
