// `wslb backend add HOST:PORT[,weight=N][,maxconn=N][,slowstart=D][,tls...]` and `wslb backend remove
// HOST:PORT [--drain D]` on the control socket: the serving generation's backends change
// without a new generation. The rows change through the reload's own backend_rows_change,
// prepared and committed at once (no new workers to wait for), the workers follow the table
// before their next pick (worker/backend_set.h), the checker and the cluster agent read the
// rows anyway, and the change goes into the state journal (runtime_backends.h). Synchronous:
// the answer goes once the table holds the change. Idempotent: adding a backend that is there
// with the same line, or removing one that is already draining, changes nothing and says so.
#include <algorithm>
#include <cstdio>

#include "common/json_text.h"
#include "common/log.h"
#include "common/parse.h"
#include "shm/table_ops.h"
#include "supervisor/backend_rows.h"
#include "supervisor/master_state.h"
#include "tls/client_context.h"

namespace wslb::supervisor {

namespace {

constexpr auto relaxed = std::memory_order_relaxed;

// The row of a backend a removal or a reload took out that still drains, or max_backends.
std::size_t draining_row(const shm::table& t, const std::string& address) {
  for (std::size_t i = 0; i < shm::backend_rows_in_use(t); ++i) {
    const shm::backend_row& r = t.backends[i];
    if (r.state.load(relaxed) == shm::backend_state::removed &&
        address == shm::address_of(r)) {
      return i;
    }
  }
  return shm::max_backends;
}

std::string seconds_text(std::uint32_t ms) {
  char text[32];
  std::snprintf(text, sizeof text, "%.3g s", ms / 1000.0);
  return text;
}

}  // namespace

void master::read_journal(config& cfg) {
  const std::string problem = journal_.open(state_file_path());
  if (!problem.empty()) log_line(who, "%s", problem.c_str());
  const std::vector<std::string> dropped = merge_runtime_backends(journal_.runtime_backends(), cfg);
  for (const std::string& d : dropped) {
    log_line(who, "runtime change of backend %s dropped", d.c_str());
  }
  for (const auto& [address, r] : journal_.runtime_backends()) {
    if (std::none_of(dropped.begin(), dropped.end(),
                     [&](const std::string& d) { return d.rfind(address + " ", 0) == 0; })) {
      log_line(who, "runtime change of backend %s applied: %s %s", address.c_str(),
               r.added ? "added as" : "removed", r.line.c_str());
    }
  }
  if (const std::string saved = journal_.forget_runtime(dropped); !saved.empty()) {
    log_line(who, "%s", saved.c_str());
  }
}

std::string master::change_serving_backends(config next) {
  shm::table& t = table_->get();
  backend_rows_change rows;
  if (std::string why = rows.prepare(t, next); !why.empty()) return why;
  rows.commit(t, next);
  // commit() wrote the configured weights; the operator's overrides go back on top.
  journal_.apply(t, next);
  children_->amend_serving(std::make_shared<const config>(std::move(next)));
  return {};
}

void master::add_backend(const std::string& spec, bool json, control_request_ptr request) {
  const auto refuse = [&](const std::string& why) {
    request->finish(false, json ? "{\"error\":" + json_string(why) + "}" : why);
  };
  backend_config added;
  std::string error;
  if (!parse_backend(spec, added, error)) return refuse("backend add: " + error);
  const std::string address = added.where.to_string();
  const std::string line = backend_line(added);
  shm::table& t = table_->get();
  const std::shared_ptr<const config> serving = children_->serving().cfg();
  if (const std::string why = tls::load_backend_tls(*serving, added); !why.empty()) {
    return refuse("backend add: " + why);
  }
  if (const backend_config* there = find_backend(*serving, address)) {
    if (backend_line(*there) != line) {
      return refuse("backend " + address + " is already there as " + backend_line(*there) +
                    " (`backend weight` changes its weight; remove it first to change the rest)");
    }
    return request->finish(true, json ? backend_json(t, *there)
                                      : "backend " + address + " unchanged (already there as " +
                                            line + ")");
  }
  // Adding back a configured backend removed at run time undoes the removal: with its line.
  const auto record = journal_.runtime_backends().find(address);
  const bool undoes_removal = record != journal_.runtime_backends().end() && !record->second.added;
  if (undoes_removal && record->second.line != line) {
    return refuse("backend " + address + " is configured as " + record->second.line +
                  ": add it back with that line, or edit the configuration and reload");
  }
  if (serving->backends.size() >= shm::max_backends) {
    return refuse("backend add: already " + std::to_string(shm::max_backends) + " backends");
  }
  config next = *serving;
  next.backends.push_back(added);
  if (const std::string why = change_serving_backends(next); !why.empty()) {
    return refuse("backend add: " + why);
  }
  const runtime_backend entry{true, line};
  const std::string saved = journal_.set_runtime(address, undoes_removal ? nullptr : &entry);
  const backend_config& now = *find_backend(*children_->serving().cfg(), address);
  const std::string text = "backend " + address + " added (row " + std::to_string(now.row) +
                           ", weight " + std::to_string(now.weight) + ")";
  log_line(who, "%s", text.c_str());
  operations_.note("admin", text);
  if (!saved.empty()) {
    log_line(who, "%s", saved.c_str());
    return request->finish(false, text + ", but the state file was not written: " + saved);
  }
  request->finish(true, json ? backend_json(t, now) : text);
}

void master::remove_backend(const std::string& address, std::uint32_t drain_ms, bool json,
                            control_request_ptr request) {
  const auto refuse = [&](const std::string& why) {
    request->finish(false, json ? "{\"error\":" + json_string(why) + "}" : why);
  };
  shm::table& t = table_->get();
  const std::shared_ptr<const config> serving = children_->serving().cfg();
  const backend_config* target = find_backend(*serving, address);
  if (target == nullptr) {
    const std::size_t row = draining_row(t, address);
    if (row == shm::max_backends) return refuse(no_such_backend(*serving, address));
    const std::uint64_t left = shm::sum_active(t, row);
    return request->finish(
        true, json ? "{\"address\":" + json_string(address) +
                         ",\"state\":\"removed\",\"active\":" + std::to_string(left) + "}"
                   : "backend " + address + " unchanged (removed, " + std::to_string(left) +
                         " connections draining)");
  }
  if (serving->backends.size() == 1) {
    return refuse("backend " + address + " is the last backend: add another first, or drain it");
  }
  const std::string line = backend_line(*target);
  const std::size_t row = target->row;
  if (drain_ms != 0) {
    // The evacuation's paced closing, set while the row is still active (it takes active rows).
    std::string reply;
    if (const std::string why = rebalancer_.evacuate(t, address, drain_ms, false, unix_ms(), reply);
        !why.empty()) {
      return refuse(why);
    }
  }
  config next = *serving;
  next.backends.erase(next.backends.begin() + (target - serving->backends.data()));
  // Nothing is staged for a removal: prepare() cannot fail here.
  change_serving_backends(std::move(next));
  const auto record = journal_.runtime_backends().find(address);
  const bool was_added = record != journal_.runtime_backends().end() && record->second.added;
  const runtime_backend entry{false, line};
  const std::string saved = journal_.set_runtime(address, was_added ? nullptr : &entry);
  const std::uint64_t left = shm::sum_active(t, row);
  const std::string text =
      "backend " + address + " removed: no new connections; " + std::to_string(left) +
      (drain_ms != 0 ? " connections closed evenly over " + seconds_text(drain_ms)
                     : " connections stay until they close");
  log_line(who, "%s", text.c_str());
  operations_.note("admin", text);
  if (!saved.empty()) {
    log_line(who, "%s", saved.c_str());
    return request->finish(false, text + ", but the state file was not written: " + saved);
  }
  request->finish(true, json ? "{\"address\":" + json_string(address) +
                                   ",\"state\":\"removed\",\"active\":" + std::to_string(left) +
                                   ",\"drain_ms\":" + std::to_string(drain_ms) + "}"
                             : text);
}

std::size_t master::undo_runtime_backends() {
  const runtime_backend_map records = journal_.runtime_backends();
  if (records.empty()) return 0;
  config next = *children_->serving().cfg();
  for (const auto& [address, r] : records) {
    if (r.added) {
      std::erase_if(next.backends,
                    [&](const backend_config& b) { return b.where.to_string() == address; });
      continue;
    }
    backend_config b;
    std::string error;
    if (find_backend(next, address) == nullptr && parse_backend(r.line, b, error) &&
        tls::load_backend_tls(next, b).empty()) {
      next.backends.push_back(b);
    }
  }
  if (next.backends.empty()) return 0;  // never: a removal always leaves one configured
  if (const std::string why = change_serving_backends(std::move(next)); !why.empty()) {
    log_line(who, "backend reset: the backends stay as they are: %s", why.c_str());
    return 0;
  }
  for (const auto& [address, r] : records) journal_.set_runtime(address, nullptr);
  return records.size();
}

}  // namespace wslb::supervisor
