#include <doctest/doctest.h>

#include <cstring>
#include <memory>

#include "shm/table.h"
#include "worker/accept_balance.h"

using namespace wslb;
using namespace wslb::worker;

constexpr auto alone = accept_standing::alone;
constexpr auto even = accept_standing::even;
constexpr auto ahead = accept_standing::ahead;
constexpr auto far_ahead = accept_standing::far_ahead;

namespace {
std::unique_ptr<shm::table> table_with(std::initializer_list<std::uint64_t> live,
                                       std::uint32_t generation = 1) {
  auto t = std::make_unique<shm::table>();
  std::memset(static_cast<void*>(t.get()), 0, sizeof(shm::table));
  shm::initialise_header(*t);
  std::size_t s = 0;
  for (std::uint64_t n : live) {
    t->workers[s].state = shm::worker_state::running;
    t->workers[s].generation = generation;
    t->workers[s].connections = n;
    t->workers[s].accepted = 1000;  // history does not count, live connections do
    ++s;
  }
  t->header.slot_high_water = static_cast<std::uint32_t>(s);
  return t;
}
// Where the worker in `slot` stands, as the acceptor works it out at a wake-up.
accept_standing standing_among_peers(const shm::table& t, std::size_t slot,
                                     std::uint32_t generation) {
  const std::optional<std::uint64_t> least = least_peer_connections(t, slot, generation);
  return least ? standing_against(t.workers[slot].connections, *least) : accept_standing::alone;
}
}  // namespace

TEST_CASE("accept_balance.ahead_only_when_clearly_ahead") {
  auto t = table_with({100, 100, 100});
  CHECK(standing_among_peers(*t, 0, 1) == even);
  t->workers[1].accepted = 5;  // accepted long ago and closed: only live connections count
  CHECK(standing_among_peers(*t, 0, 1) == even);
  t->workers[0].connections = 114;  // 9/8 x 100 + 2 = 114.5
  CHECK(standing_among_peers(*t, 0, 1) == even);
  t->workers[0].connections = 115;
  CHECK(standing_among_peers(*t, 0, 1) == ahead);
  t->workers[0].connections = 133;  // 5/4 x 100 + 8
  CHECK(standing_among_peers(*t, 0, 1) == ahead);
  t->workers[0].connections = 134;
  CHECK(standing_among_peers(*t, 0, 1) == far_ahead);
  // The least-loaded peer counts, not the average.
  t->workers[0].connections = 100;
  t->workers[2].connections = 10;
  CHECK(standing_among_peers(*t, 0, 1) == far_ahead);
  CHECK(standing_among_peers(*t, 2, 1) == even);
  // A couple of connections apart is noise.
  auto small = table_with({2, 0});
  CHECK(standing_among_peers(*small, 0, 1) == even);
  small->workers[0].connections = 3;
  CHECK(standing_among_peers(*small, 0, 1) == ahead);
}

TEST_CASE("accept_balance.compares_running_workers_of_its_generation_only") {
  auto t = table_with({500, 100});
  CHECK(standing_among_peers(*t, 0, 1) == far_ahead);
  t->workers[1].state = shm::worker_state::draining;  // old or leaving: not a peer
  CHECK(standing_among_peers(*t, 0, 1) == alone);
  t->workers[1].state = shm::worker_state::running;
  t->workers[1].generation = 2;  // another generation
  CHECK(standing_among_peers(*t, 0, 1) == alone);
  t->workers[1].generation = 1;
  t->workers[1].state = shm::worker_state::starting;  // not accepting yet
  CHECK(standing_among_peers(*t, 0, 1) == alone);
  // Alone: nothing to compare with.
  auto single = table_with({1000});
  CHECK(standing_among_peers(*single, 0, 1) == alone);
}

TEST_CASE("accept_balance.peers_accepted_sums_running_peers_of_its_generation") {
  auto t = table_with({0, 0, 0});
  t->workers[0].accepted = 7;  // itself: not counted
  t->workers[1].accepted = 5;
  t->workers[2].accepted = 11;
  CHECK(peers_accepted(*t, 0, 1) == 16);
  t->workers[2].state = shm::worker_state::draining;
  CHECK(peers_accepted(*t, 0, 1) == 5);
  CHECK(peers_accepted(*t, 0, 2) == 0);
}
