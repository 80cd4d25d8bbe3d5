#include <doctest/doctest.h>

#include <atomic>
#include <memory>
#include <vector>

#include "shm/table_ops.h"
#include "tests/unit/forked_child.h"
#include "tests/unit/table_image.h"
#include "worker/admission.h"

using namespace wslb;
using namespace wslb::worker;

TEST_CASE("admission.maxconn_counts_every_worker_row") {
  auto t = wslb::testing::fresh_table();
  t->header.slot_high_water = 3;
  t->workers[0].backends[5].active = 4;
  t->workers[2].backends[5].active = 5;
  CHECK(reserve_place(*t, t->workers[1], 5, 10));
  CHECK(t->workers[1].backends[5].active == 1);
  CHECK_FALSE(reserve_place(*t, t->workers[1], 5, 10));  // 4 + 5 + 1 = 10: full
  CHECK(t->workers[1].backends[5].active == 1);          // a refusal changes nothing
  CHECK(t->workers[1].reserving == 0);
  CHECK(reserve_place(*t, t->workers[1], 4, 0));  // no limit on another backend
}

TEST_CASE("admission.maxconn_counts_the_other_nodes_of_the_tier") {
  auto t = wslb::testing::fresh_table();
  t->header.slot_high_water = 2;
  t->workers[0].backends[3].active = 4;
  t->backends[3].cluster_active = 5;  // the other nodes' last-known count (the cluster agent's)
  CHECK(reserve_place(*t, t->workers[1], 3, 10));        // 4 + 5 + ours = 10
  CHECK_FALSE(reserve_place(*t, t->workers[1], 3, 10));  // 4 + 5 + 1 + ours = 11
  t->backends[3].cluster_active = 2;                      // places freed on another node
  CHECK(reserve_place(*t, t->workers[1], 3, 10));
  CHECK(t->workers[1].backends[3].active == 2);
}

TEST_CASE("admission.another_workers_reservation_holds_a_place") {
  auto t = wslb::testing::fresh_table();
  t->header.slot_high_water = 2;
  t->workers[0].backends[2].active = 8;
  t->workers[0].reserving = 3;  // worker 0 is taking a place on row 2 right now
  CHECK(reserve_place(*t, t->workers[1], 2, 10));        // 8 + 1 + ours = 10
  CHECK_FALSE(reserve_place(*t, t->workers[1], 2, 10));  // 8 + 1 + 1 + ours = 11
  t->workers[0].reserving = 0;                            // cleared (by it, or with its row)
  CHECK(reserve_place(*t, t->workers[1], 2, 11));
}

TEST_CASE("admission.workers_racing_in_processes_never_pass_maxconn") {
  // Four processes take places on one backend as fast as they can, each dropping one of its own
  // now and then; each checks the live sum after every place it takes, and the parent samples
  // it all along. It must never pass maxconn.
  wslb::testing::shared_table shared;
  shm::table& t = *shared.t;
  constexpr std::uint32_t maxconn = 25;
  constexpr std::size_t workers = 4;
  t.header.slot_high_water = workers;
  auto* go = reinterpret_cast<std::atomic<std::uint32_t>*>(&t.header.round_robin_next);
  std::vector<std::unique_ptr<wslb::testing::forked_child>> children;
  for (std::size_t w = 0; w < workers; ++w) {
    children.push_back(std::make_unique<wslb::testing::forked_child>([&, w](int) {
      while (go->load() == 0) {
      }
      auto& mine = t.workers[w].backends[0].active;
      std::uint64_t admitted = 0;
      for (int i = 0; i < 200000; ++i) {
        if (reserve_place(t, t.workers[w], 0, maxconn)) {
          ++admitted;
          // Seen from inside the race too, right after each place taken.
          if (shm::sum_active(t, 0) > maxconn) return 2;
        }
        // Each holds at most 7 (4 x 7 > 25: they compete for the last places).
        if ((mine.load() >= 7 || i % 3 == 0) && mine.load() > 0) mine.store(mine.load() - 1);
      }
      return admitted > maxconn ? 0 : 1;  // places were taken and given back over and over
    }));
  }
  go->store(1);
  std::uint64_t peak = 0;
  int running = workers;
  while (running > 0) {
    peak = std::max(peak, shm::sum_active(t, 0));
    running = 0;
    for (auto& c : children) {
      if (c->pid > 0) {
        int status = 0;
        if (waitpid(c->pid, &status, WNOHANG) == c->pid) {
          CHECK(WIFEXITED(status));
          CHECK(WEXITSTATUS(status) == 0);
          c->pid = -1;
        } else {
          ++running;
        }
      }
    }
  }
  CHECK(shm::sum_active(t, 0) <= maxconn);
  CHECK(peak <= maxconn);
  CHECK(peak > 0);
}

TEST_CASE("admission.slow_start_ramps_weight_linearly") {
  CHECK(ramped_weight_milli(2, 0, 10'000, 5'000) == 2000);           // up since start: no ramp
  CHECK(ramped_weight_milli(2, 100'000, 0, 100'001) == 2000);        // no slowstart
  CHECK(ramped_weight_milli(2, 100'000, 10'000, 100'000) == 1);      // just up: the least
  CHECK(ramped_weight_milli(2, 100'000, 10'000, 102'500) == 500);    // a quarter
  CHECK(ramped_weight_milli(2, 100'000, 10'000, 105'000) == 1000);   // half
  CHECK(ramped_weight_milli(2, 100'000, 10'000, 110'000) == 2000);   // done
  CHECK(ramped_weight_milli(2, 100'000, 10'000, 99'000) == 1);       // clock behind: start
}
