#include <doctest/doctest.h>

#include <cstring>
#include <memory>
#include <vector>

#include "shm/table.h"
#include "worker/handover_spread.h"

using namespace wslb;
using namespace wslb::worker;

namespace {

struct row_figures {
  std::uint32_t generation;
  shm::worker_state state;
  std::uint64_t connections;
  std::uint64_t handed_over = 0;
  std::uint64_t handed_in = 0;
};

std::unique_ptr<shm::table> table_with(std::initializer_list<row_figures> rows) {
  auto t = std::make_unique<shm::table>();
  std::memset(static_cast<void*>(t.get()), 0, sizeof(shm::table));
  shm::initialise_header(*t);
  std::size_t s = 0;
  for (const row_figures& r : rows) {
    t->workers[s].state = r.state;
    t->workers[s].generation = r.generation;
    t->workers[s].connections = r.connections;
    t->workers[s].handed_over = r.handed_over;
    t->workers[s].handed_in = r.handed_in;
    ++s;
  }
  t->header.slot_high_water = static_cast<std::uint32_t>(s);
  return t;
}

// Sends `mine` tunnels one by one to the lightest receiver, as the sending worker does.
void send_all(std::vector<receiver_load>& receivers, std::uint64_t mine,
              std::uint64_t all_moving) {
  for (std::uint64_t n = 0; n < mine; ++n) {
    receiver_load* best = nullptr;
    for (receiver_load& r : receivers) {
      if (best == nullptr || lighter(r, *best, mine, all_moving)) best = &r;
    }
    ++best->sent;
  }
}

constexpr auto draining = shm::worker_state::draining;
constexpr auto running = shm::worker_state::running;

}  // namespace

TEST_CASE("handover_spread.moving_in_all_reads_alike_before_during_and_after_a_sender") {
  // Two senders of generation 1 with 150 each; receivers of generation 2.
  auto before = table_with({{1, draining, 150}, {1, draining, 150}, {2, running, 0},
                            {2, running, 200}});
  CHECK(moving_in_all(*before, 2) == 300);
  // The first has sent 100, of which 60 are taken in and 40 in flight.
  auto during = table_with({{1, draining, 50, 100}, {1, draining, 150}, {2, running, 60, 0, 60},
                            {2, running, 200}});
  CHECK(moving_in_all(*during, 2) == 300);
  // The first has exited (its row cleared, empty); what it sent is taken in.
  auto after = table_with({{0, shm::worker_state::empty, 0}, {1, draining, 150},
                           {2, running, 125, 0, 125}, {2, running, 225, 0, 25}});
  CHECK(moving_in_all(*after, 2) == 300);
  // Rows of the newest generation hold no senders; nor do an older one's empty rows.
  CHECK(moving_in_all(*table_with({{3, running, 10}}), 3) == 0);
}

TEST_CASE("handover_spread.own_connections_leave_out_what_was_handed_in") {
  auto t = table_with({{2, running, 225, 0, 25}, {2, running, 10, 0, 12}});
  CHECK(own_connections(t->workers[0]) == 200);
  CHECK(own_connections(t->workers[1]) == 0);  // some handed-in ones closed: never below 0
}

TEST_CASE("handover_spread.one_sender_alone_is_plain_least_loaded") {
  std::vector<receiver_load> r{{0, 0}, {200, 0}};
  send_all(r, 300, 300);
  CHECK(r[0].sent == 250);
  CHECK(r[1].sent == 50);
}

TEST_CASE("handover_spread.two_senders_at_once_even_out_unequal_receivers") {
  // Each sees 0 and 200 and moves 150 of 300: each fills half of each gap.
  std::vector<receiver_load> a{{0, 0}, {200, 0}}, b{{0, 0}, {200, 0}};
  send_all(a, 150, 300);
  send_all(b, 150, 300);
  CHECK(a[0].sent + b[0].sent == 250);
  CHECK(a[1].sent + b[1].sent == 50);
}

TEST_CASE("handover_spread.a_late_sender_fills_what_the_early_one_left") {
  // The first sent alone and exited; the second looks later: the receivers' own loads are the
  // same figures (what was handed in is left out), and all that moves is still 300.
  std::vector<receiver_load> a{{0, 0}, {200, 0}};
  send_all(a, 150, 300);
  auto later = table_with({{1, draining, 150}, {2, running, 0 + a[0].sent, 0, a[0].sent},
                           {2, running, 200 + a[1].sent, 0, a[1].sent}});
  std::vector<receiver_load> b{{own_connections(later->workers[1]), 0},
                               {own_connections(later->workers[2]), 0}};
  send_all(b, 150, moving_in_all(*later, 2));
  CHECK(a[0].sent + b[0].sent == 250);
  CHECK(a[1].sent + b[1].sent == 50);
}

TEST_CASE("handover_spread.three_senders_over_three_even_receivers_split_evenly") {
  std::vector<std::uint64_t> got(3, 0);
  for (int sender = 0; sender < 3; ++sender) {
    std::vector<receiver_load> r(3);
    send_all(r, 100, 300);
    for (std::size_t i = 0; i < 3; ++i) got[i] += r[i].sent;
  }
  // Ties go to the first receiver: one tunnel per sender at most beside the even share.
  for (std::uint64_t n : got) CHECK((n >= 99 && n <= 102));
  CHECK(got[0] + got[1] + got[2] == 300);
}

TEST_CASE("handover_spread.a_sender_runs_ahead_of_a_full_receiver_by_max_lead_at_most") {
  // One sender of 300 of 600 in all; the receivers held nothing of their own.
  const receiver_load full{0, 10};
  CHECK(within_lead({0, 10 + max_lead}, full, 300, 600));
  CHECK_FALSE(within_lead({0, 10 + max_lead + 1}, full, 300, 600));
  // Own connections count at the sender's part: 2 x max_lead own = max_lead of its own tunnels.
  CHECK(within_lead({2 * max_lead, 10}, full, 300, 600));
  CHECK_FALSE(within_lead({2 * max_lead + 2, 10}, full, 300, 600));
}
