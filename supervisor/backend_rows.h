// Keeping the table's backend rows in step with the configuration. A backend keeps its row
// for as long as it is configured (found by its HOST:PORT text), so its live counts and health
// carry over a reload; a removed backend's row stays `removed` until its last connection closes.
// A reload changes rows in two steps: prepare() finds a row for every backend and stages the
// new ones aside (`staged`: only the new generation's workers may pick them), and commit() makes
// the new configuration the table's truth once the new generation runs; roll_back() returns
// the staged rows, leaving the table as it was.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/config.h"
#include "shm/layout.h"

namespace wslb::supervisor {

// Master only. One reload's change to the backend rows.
class backend_rows_change {
 public:
  // Assigns each backend in `next` a row (its existing one when its text is already in the
  // table, else a free one, staged). Touches no row the serving generation uses. Returns "" or
  // why not ("no free backend row ..."), having staged nothing then.
  std::string prepare(shm::table& t, config& next);
  // Writes weight, address and state of every row of `next`, and marks rows no longer
  // configured `removed`. A kept row whose name now resolves to another address starts over
  // healthy. `next` is the config prepare() was given.
  void commit(shm::table& t, const config& next);
  // Frees the rows prepare() staged, and lowers the high-water mark to where it was.
  void roll_back(shm::table& t);

 private:
  std::vector<std::size_t> staged_;   // new rows, empty again on roll-back
  std::vector<std::size_t> revived_;  // `removed` rows taken back, `removed` again on roll-back
  std::uint32_t high_water_before_ = 0;  // backend_high_water before the rows were staged
};

// Master only, at start-up: prepare and commit at once. Returns false with `error` set when
// the table has no free row.
bool apply_backends(shm::table& t, config& cfg, std::string& error);

// Master only, periodically: frees `removed` rows whose live count has dropped to zero.
void release_drained_backends(shm::table& t);

// Master only: writes the health-check settings into the checker row.
void apply_check_settings(shm::table& t, const check_config& check);

// What a reload changes in the backends (" +new -gone ~kept weight 1->2 ~kept address A->B"),
// once prepare() has given each backend of `after` its row: a backend that keeps its row is the
// same one.
std::string backend_changes(const config& before, const config& after);

}  // namespace wslb::supervisor
