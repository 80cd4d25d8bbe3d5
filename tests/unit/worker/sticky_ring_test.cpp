#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "worker/sticky_ring.h"

using namespace wslb::worker;

namespace {

std::vector<std::string> keys(std::size_t n) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < n; ++i) out.push_back("session-" + std::to_string(i));
  return out;
}

}  // namespace

TEST_CASE("sticky_ring.empty_and_all_down") {
  sticky_ring ring;
  CHECK_FALSE(ring.lookup("k").has_value());
  std::vector<ring_member> members = {{0, "127.0.0.1:9001", 1, false},
                                      {1, "127.0.0.1:9002", 1, false}};
  ring.rebuild(members);
  CHECK(ring.empty());
  CHECK_FALSE(ring.lookup("k").has_value());
  members[1].healthy = true;
  ring.rebuild(members);
  CHECK(ring.point_count() == sticky_ring::points_per_weight);
  CHECK(ring.lookup("k") == std::optional<std::size_t>(1));
}

TEST_CASE("sticky_ring.same_key_same_backend") {
  std::vector<ring_member> members = {{0, "127.0.0.1:9001", 1, true},
                                      {1, "127.0.0.1:9002", 1, true},
                                      {2, "127.0.0.1:9003", 1, true}};
  sticky_ring a;
  sticky_ring b;
  a.rebuild(members);
  // Another worker, members listed in another order: the same ring.
  std::vector<ring_member> reversed(members.rbegin(), members.rend());
  b.rebuild(reversed);
  for (const std::string& k : keys(1000)) {
    const auto first = a.lookup(k);
    REQUIRE(first.has_value());
    CHECK(a.lookup(k) == first);
    CHECK(b.lookup(k) == first);
  }
  CHECK(hash_key("abc") == hash_key("abc"));
  CHECK(hash_key("abc") != hash_key("abd"));
}

TEST_CASE("sticky_ring.removing_a_backend_moves_only_its_keys") {
  std::vector<ring_member> members = {{0, "127.0.0.1:9001", 1, true},
                                      {1, "127.0.0.1:9002", 1, true},
                                      {2, "127.0.0.1:9003", 1, true}};
  sticky_ring ring;
  ring.rebuild(members);
  const std::vector<std::string> ks = keys(1000);
  std::vector<std::size_t> before;
  std::size_t per_backend[3] = {};
  for (const std::string& k : ks) {
    before.push_back(*ring.lookup(k));
    ++per_backend[before.back()];
  }
  // Each backend holds a fair share to begin with (1/3 ± a generous margin).
  for (std::size_t n : per_backend) CHECK((n > 200 && n < 470));

  for (std::size_t down = 0; down < 3; ++down) {
    CAPTURE(down);
    std::vector<ring_member> less = members;
    less[down].healthy = false;
    sticky_ring r2;
    r2.rebuild(less);
    for (std::size_t i = 0; i < ks.size(); ++i) {
      const std::size_t now = *r2.lookup(ks[i]);
      CHECK(now != down);
      if (before[i] != down) CHECK(now == before[i]);  // a key on a surviving backend stays
    }
    // It comes back: every key returns to where it was.
    r2.rebuild(members);
    for (std::size_t i = 0; i < ks.size(); ++i) CHECK(*r2.lookup(ks[i]) == before[i]);
  }
}

TEST_CASE("sticky_ring.weights_are_honoured") {
  std::vector<ring_member> members = {{0, "10.0.0.1:80", 1, true},
                                      {1, "10.0.0.2:80", 2, true},
                                      {2, "10.0.0.3:80", 1, true}};
  sticky_ring ring;
  ring.rebuild(members);
  CHECK(ring.point_count() == 4 * sticky_ring::points_per_weight);
  std::map<std::size_t, std::size_t> count;
  const std::vector<std::string> ks = keys(20000);
  for (const std::string& k : ks) ++count[*ring.lookup(k)];
  const double light = static_cast<double>(count[0] + count[2]) / 2.0;
  const double ratio = static_cast<double>(count[1]) / light;
  CAPTURE(count[0]);
  CAPTURE(count[1]);
  CAPTURE(count[2]);
  CHECK(ratio > 1.6);
  CHECK(ratio < 2.4);
}

TEST_CASE("sticky_ring.large_weights_are_capped_and_stay_consistent") {
  std::vector<ring_member> members;
  for (std::size_t i = 0; i < 64; ++i) {
    members.push_back({i, "", static_cast<std::uint32_t>(i == 0 ? 1000 : 10), true});
  }
  std::vector<std::string> addresses;
  for (std::size_t i = 0; i < 64; ++i) addresses.push_back("10.0.1." + std::to_string(i) + ":80");
  for (std::size_t i = 0; i < 64; ++i) members[i].address = addresses[i];
  sticky_ring ring;
  ring.rebuild(members);
  CHECK(ring.point_count() <= sticky_ring::max_points + 64);
  CHECK(ring.point_count() >= 1000 + 63 * 10);
  const std::vector<std::string> ks = keys(2000);
  std::vector<std::size_t> before;
  for (const std::string& k : ks) before.push_back(*ring.lookup(k));
  members[5].healthy = false;
  ring.rebuild(members);
  for (std::size_t i = 0; i < ks.size(); ++i) {
    if (before[i] != 5) CHECK(*ring.lookup(ks[i]) == before[i]);
  }
}

TEST_CASE("sticky_ring.lookup_matches_a_plain_scan_with_64_backends") {
  std::vector<std::string> addresses;
  for (std::size_t i = 0; i < 64; ++i) {
    addresses.push_back("192.168.0." + std::to_string(i) + ":9000");
  }
  std::vector<ring_member> members;
  for (std::size_t i = 0; i < 64; ++i) members.push_back({i, addresses[i], 1, true});
  sticky_ring ring;
  ring.rebuild(members);
  CHECK(std::is_sorted(ring.points_for_test().begin(), ring.points_for_test().end()));
  CHECK(ring.point_count() == 6400);
  // Lookups agree with a plain scan for the first point at or after the key.
  const std::vector<std::uint64_t>& pts = ring.points_for_test();
  for (const std::string& k : keys(500)) {
    const std::uint64_t h = hash_key(k) & ~sticky_ring::row_mask;
    std::uint64_t owner = pts.front();
    for (const std::uint64_t p : pts) {
      if (p >= h) {
        owner = p;
        break;
      }
    }
    CHECK(*ring.lookup(k) == (owner & sticky_ring::row_mask));
  }
}

TEST_CASE("sticky_ring.nodes_with_other_rows_agree_by_address") {
  // Two cluster nodes list the same backends in another order, so their table rows differ
  // (node B's rows also have a gap left by a reload): a key still maps to the same address.
  const std::vector<std::string> addresses = {"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"};
  std::vector<ring_member> on_a, on_b;
  for (std::size_t i = 0; i < addresses.size(); ++i) {
    on_a.push_back({i, addresses[i], 1 + static_cast<std::uint32_t>(i), true});
    const std::size_t j = addresses.size() - 1 - i;
    on_b.push_back({5 + 2 * j, addresses[j], 1 + static_cast<std::uint32_t>(j), true});
  }
  const auto address_of = [](const std::vector<ring_member>& members, std::size_t row) {
    for (const auto& m : members) {
      if (m.row == row) return std::string(m.address);
    }
    return std::string();
  };
  sticky_ring a, b;
  a.rebuild(on_a);
  b.rebuild(on_b);
  for (const std::string& k : keys(5000)) {
    REQUIRE(a.lookup(k).has_value());
    CHECK(address_of(on_a, *a.lookup(k)) == address_of(on_b, *b.lookup(k)));
  }
}
