// Test support: a zeroed table with this build's header, on the heap. It is what
// table_mapping::create() leaves in /dev/shm, without touching shared memory, so the pure parts
// (sums, pickers, health rows, status rendering) are tested on a plain byte buffer.
#pragma once

#include <cstring>
#include <memory>

#include "shm/table.h"

namespace wslb::testing {

inline std::unique_ptr<shm::table> fresh_table() {
  auto t = std::make_unique<shm::table>();
  std::memset(static_cast<void*>(t.get()), 0, sizeof(shm::table));
  shm::initialise_header(*t);
  return t;
}

}  // namespace wslb::testing
