// The operator's runtime changes to backends (`wslb backend drain|ready|maint|weight`) and
// their journal, the instance's state file. Every change is written at once (write, fsync,
// rename) and applied again on reload, on a restart of the master and on the next `run` of the
// name, but only while that backend's configuration line is unchanged: an edited line wins and
// its override is dropped (HAProxy's server-state file overrides later edits silently; this
// one says which it dropped). Master only.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/config.h"
#include "shm/layout.h"
#include "supervisor/runtime_backends.h"

namespace wslb::supervisor {

// What the operator changed about one backend, and the configuration line it applies to.
struct backend_override {
  std::string line;  // the backend's configuration as it was: "HOST:PORT,weight=N"
  shm::admin_state state = shm::admin_state::ready;
  std::uint32_t weight = 0;  // 0: the configured weight

  bool operator==(const backend_override&) const = default;
};

// Overrides by backend address ("HOST:PORT").
using override_map = std::map<std::string, backend_override>;

// "HOST:PORT,weight=N": the identity of a backend's configuration line.
std::string config_line(const backend_config& b);
// "ready", "drain", "maint"; false for anything else.
bool parse_admin_state(const std::string& word, shm::admin_state& out);

// The journal's text: one line per override, "backend\tHOST:PORT\tLINE\tSTATE\tWEIGHT", and
// one per backend added or removed at run time (runtime_backends.h).
std::string render_state_file(const override_map& overrides, const runtime_backend_map& runtime);
std::string render_overrides(const override_map& overrides);
// Parses a journal's text. Returns "" or what is wrong (the line number and why); the maps are
// filled only when the whole text is good.
std::string parse_state_file(const std::string& text, override_map& overrides,
                             runtime_backend_map& runtime);
std::string parse_overrides(const std::string& text, override_map& out);

// Splits `overrides` against configuration `cfg`: those whose backend is configured with the
// same line apply; the others are dropped (returned as "HOST:PORT (why)").
std::vector<std::string> dropped_overrides(const override_map& overrides, const config& cfg);

class override_journal {
 public:
  // Reads the state file at `path`. A missing file is an empty journal. A malformed one is
  // reported (returned), moved aside to `path.bad`, and the journal starts empty: never fatal.
  std::string open(std::string path);
  const override_map& overrides() const { return overrides_; }

  // Applies the overrides that still match `cfg` to the table's rows (admin state, weight)
  // and forgets the dropped ones, saving the journal if any were dropped. Returns the
  // dropped ones ("HOST:PORT (why)").
  std::vector<std::string> apply(shm::table& t, const config& cfg);

  // Records an override (replacing the backend's previous one; a plain `ready` with no weight
  // removes it) and saves. Returns "" or why it could not be saved (the change stands).
  std::string set(const std::string& address, backend_override o);
  // Forgets every override and saves.
  std::string clear();

  // Backends added or removed at run time (runtime_backends.h).
  const runtime_backend_map& runtime_backends() const { return runtime_; }
  // Records that backend `address` was added or removed (replacing its previous record), or
  // with null forgets its record, and saves. Returns "" or why it could not be saved.
  std::string set_runtime(const std::string& address, const runtime_backend* record);
  // Forgets the records that `dropped` names ("HOST:PORT (why)") and saves if there were any.
  std::string forget_runtime(const std::vector<std::string>& dropped);

 private:
  std::string save() const;
  std::string path_;
  override_map overrides_;
  runtime_backend_map runtime_;
};

}  // namespace wslb::supervisor
