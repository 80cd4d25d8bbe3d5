#include <doctest/doctest.h>

#include <cstring>
#include <memory>

#include "shm/table_ops.h"
#include "worker/passive_health.h"

using namespace wslb;
using namespace wslb::worker;

namespace {
std::unique_ptr<shm::backend_row> up_row() {
  auto row = std::make_unique<shm::backend_row>();
  std::memset(static_cast<void*>(row.get()), 0, sizeof(shm::backend_row));
  row->state = shm::backend_state::active;
  row->healthy = 1;
  row->check_streak = 2;
  return row;
}
}  // namespace

TEST_CASE("passive.marks_down_at_fall_failures_in_a_row") {
  auto row = up_row();
  std::string reason;
  CHECK_FALSE(note_connect_failure(*row, 3, "connection refused", reason));
  CHECK_FALSE(note_connect_failure(*row, 3, "connection refused", reason));
  CHECK(row->healthy == 1);
  CHECK(note_connect_failure(*row, 3, "timeout after 3000 ms", reason));
  CHECK(row->healthy == 0);
  CHECK(row->check_streak == 0);
  CHECK(row->transitions == 1);
  CHECK(reason == "passive: 3 connect failures in a row (last: timeout after 3000 ms)");
  CHECK(shm::read_last_error(*row) == reason);
  // Already down: later failures mark nothing again (one transition, one log line).
  CHECK_FALSE(note_connect_failure(*row, 3, "connection refused", reason));
  CHECK(row->transitions == 1);
}

TEST_CASE("passive.a_success_resets_the_streak") {
  auto row = up_row();
  std::string reason;
  CHECK_FALSE(note_connect_failure(*row, 2, "connection refused", reason));
  note_connect_success(*row);
  CHECK(row->passive_fail_streak == 0);
  CHECK_FALSE(note_connect_failure(*row, 2, "connection refused", reason));
  CHECK(row->healthy == 1);
  CHECK(note_connect_failure(*row, 2, "connection refused", reason));
  CHECK(row->healthy == 0);
}

TEST_CASE("passive.streak_is_shared_by_workers_and_only_one_marks") {
  // Several workers' failures add up in the row; the one reaching `fall` marks it.
  auto row = up_row();
  row->passive_fail_streak = 4;  // other workers' failures
  std::string reason;
  CHECK(note_connect_failure(*row, 5, "connection reset", reason));
  CHECK(reason.find("passive: 5 connect failures") == 0);
  std::string other;
  CHECK_FALSE(note_connect_failure(*row, 5, "connection reset", other));
  CHECK(row->transitions == 1);
}
