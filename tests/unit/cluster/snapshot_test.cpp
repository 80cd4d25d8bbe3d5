#include <doctest/doctest.h>

#include "cluster/snapshot.h"
#include "shm/table_ops.h"
#include "tests/unit/table_image.h"

using namespace wslb;
using namespace wslb::cluster;

TEST_CASE("snapshot.round_trips") {
  node_snapshot s{"web-a", 0x9f3c0d2e71a4b605ULL, 42, 1764412345678, {{"10.0.0.5:9001", 37}, {"app2:9001", 0}}};
  const std::string text = encode(s);
  CHECK(text.rfind("wslb-snapshot 1\nnode web-a\nboot 9f3c0d2e71a4b605\n", 0) == 0);
  const auto back = decode(text);
  REQUIRE(back);
  CHECK(back->node_id == "web-a");
  CHECK(back->boot == s.boot);
  CHECK(back->seq == 42);
  CHECK(back->published_ms == 1764412345678);
  CHECK(back->counts == s.counts);
  CHECK(back->total() == 37);
}

TEST_CASE("snapshot.anything_else_is_ignored_whole") {
  CHECK_FALSE(decode(""));
  CHECK_FALSE(decode("hello"));
  CHECK_FALSE(decode("wslb-snapshot 2\nnode a\nboot 1\nseq 1\n"));  // a newer format
  CHECK_FALSE(decode("wslb-snapshot 1\nboot 1\nseq 1\n"));          // no node
  CHECK_FALSE(decode("wslb-snapshot 1\nnode a\nboot xyz\nseq 1\n"));
  CHECK_FALSE(decode("wslb-snapshot 1\nnode a\nboot 1\nseq 1\nbackend h:1 -3\n"));
  CHECK_FALSE(decode("wslb-snapshot 1\nnode a\nboot 1\nseq 1\nbackend h:1\n"));
  CHECK_FALSE(decode("wslb-snapshot 1\nnode a\nboot 1\nseq 1\nsurprise 1\n"));
  CHECK(decode("wslb-snapshot 1\nnode a\nboot 1\nseq 1\n"));
}

TEST_CASE("snapshot.local_counts_sum_worker_rows_by_address") {
  auto t = testing::fresh_table();
  t->header.backend_high_water = 3;
  t->header.slot_high_water = 4;
  const char* addresses[] = {"10.0.0.1:80", "10.0.0.2:80", "10.0.0.1:80"};  // row 2: re-added
  for (std::size_t b = 0; b < 3; ++b) {
    shm::copy_fixed(t->backends[b].address, shm::address_chars, addresses[b]);
    t->backends[b].state = b == 0 ? shm::backend_state::removed : shm::backend_state::active;
  }
  t->workers[0].backends[0].active = 2;
  t->workers[3].backends[0].active = 1;
  t->workers[1].backends[1].active = 5;
  t->workers[1].backends[2].active = 4;
  const auto counts = local_counts(*t);
  REQUIRE(counts.size() == 2);
  CHECK(counts[0] == std::pair<std::string, std::uint64_t>{"10.0.0.1:80", 7});
  CHECK(counts[1] == std::pair<std::string, std::uint64_t>{"10.0.0.2:80", 5});
}
