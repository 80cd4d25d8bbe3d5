// Backends the operator added or removed at run time (`wslb backend add|remove`), as the state
// journal keeps them, and how they join a configuration read from the flags and the file: on
// every reload, when the master starts again and on the next `run` of the name. The file wins
// over the journal, and says so: an address the file configures now takes its line from the
// file (the runtime addition is dropped), and a removal holds only while the line it removed
// is unchanged. Master only; pure apart from resolving host names and reading CA files.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "common/config.h"

namespace wslb::supervisor {

// One backend the operator added, or a configured one the operator removed.
struct runtime_backend {
  bool added = true;  // false: removed
  std::string line;   // backend_line() of the backend added, or of the configured one removed

  bool operator==(const runtime_backend&) const = default;
};

// Records by backend address ("HOST:PORT").
using runtime_backend_map = std::map<std::string, runtime_backend>;

// "HOST:PORT,weight=N[,maxconn=N][,slowstart=Nms][,tls[,sni=NAME][,ca=FILE]]": everything a backend's line says, in one
// spelling, so two lines that mean the same compare equal.
std::string backend_line(const backend_config& b);

// The journal's lines for `records`: "added\tHOST:PORT\tLINE" or "removed\tHOST:PORT\tLINE".
std::string render_runtime_backends(const runtime_backend_map& records);
// One journal line already split at its tabs, whose first field is "added" or "removed".
// Returns "" and adds the record, or why the line is not one.
std::string parse_runtime_backend(const std::vector<std::string>& fields,
                                  runtime_backend_map& records);

// Joins `records` to `cfg`, a configuration as the flags and the file give it (rows not yet
// assigned): an added backend is appended unless the file configures its address now; a
// removed one is taken out while its line is unchanged, unless it is the last backend. Returns
// the records that no longer apply ("HOST:PORT (why)"); `cfg` has the others applied. An added
// line that does not parse or resolve any more is dropped too, never fatal.
std::vector<std::string> merge_runtime_backends(const runtime_backend_map& records, config& cfg);

// The backend of `cfg` at `address`, or null.
const backend_config* find_backend(const config& cfg, const std::string& address);

}  // namespace wslb::supervisor
