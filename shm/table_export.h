// The table's live state in a form that does not depend on its layout: what an upgrading master
// hands a successor built with another layout, which cannot read the old table's structs and
// must not try. Text lines, one record each ("backend 2 weight=3 address=<hex> ..."), named
// fields in any order, texts and keys in hex; a reader skips a field it does not know and takes
// 0 for one it does not find, so either side may add fields without breaking the other. The
// first line names the format and its version ("wslb-table-export 1"); another version is
// refused. Pure: a table image in, text out, and back (unit-tested on plain buffers).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "shm/layout.h"

namespace wslb::shm {

inline constexpr std::uint32_t export_version = 1;

// What the export carries besides the table itself.
struct export_names {
  std::string segment;    // the exported table's name in /dev/shm
  std::string successor;  // the name the successor's rebuilt table takes
};

// The old master, when an upgrade starts: the state that is not rebuilt from the
// configuration. Backend rows (address, weight, maxconn, slow start, operator state, health and
// its check results, evacuation, the row index and config epoch, totals so far, live
// connections), worker rows in use (row, pid, generation: the workers that will hand over), the
// header's generation and rotation counters, and the TLS session-ticket keys. Not carried: the
// per-worker counters (a new table's generation starts at zero), a rebalance plan in flight,
// the checker's and the cluster agent's rows (their new processes rebuild them).
std::string export_table(const table& t, const export_names& names);

// The new master, into a freshly created (zeroed) table of its own layout: rebuilds what
// export_table wrote. The old workers' rows become `predecessor` rows (shown, trusted as
// handover senders, never picked by free_rows); each active backend's live connections become
// its inherited_active. Returns "" or why the export cannot be read (another version, a row this
// layout has no room for, a malformed field), having written nothing of it then... except that
// a failed import leaves a table the caller throws away anyway. `names` receives the names.
std::string import_table(std::string_view text, table& t, export_names& names);

// The instance the export was made for and the two names, read before anything is rebuilt
// (the new master checks they are its own, then creates the successor table). Empty strings
// for what the export does not name.
struct export_header {
  std::string instance;
  export_names names;
};
export_header read_export_header(std::string_view text);

}  // namespace wslb::shm
