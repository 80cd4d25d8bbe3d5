// `wslb backend ...` on the control socket: the operator's runtime control of backends.
// Synchronous (the answer comes once the table says it) and idempotent (asking for the state a
// backend is in already changes nothing and says so).
#include <algorithm>
#include <charconv>
#include <cstdio>
#include <sstream>
#include <vector>

#include "cli/status_view.h"
#include "common/json_text.h"
#include "common/log.h"
#include "shm/table_ops.h"
#include "supervisor/instance_files.h"
#include "supervisor/master_state.h"

namespace wslb::supervisor {

using cli::to_string;

namespace {

constexpr auto relaxed = std::memory_order_relaxed;

constexpr const char* backend_usage =
    "backend list | add HOST:PORT[,weight=N] | remove HOST:PORT [drain=MS] | "
    "drain|ready|maint HOST:PORT | weight HOST:PORT N | reset  [--json]";

// The backends of a generation that is starting are the reload's: runtime changes wait.
constexpr const char* reload_in_progress =
    "a reload is in progress; try again once it has finished";

std::vector<std::string> words_of(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

// Rows a runtime removal or a reload took out that still drain connections: `backend list`
// shows them after the configured ones.
std::vector<std::size_t> draining_rows(const shm::table& t) {
  std::vector<std::size_t> rows;
  for (std::size_t i = 0; i < shm::backend_rows_in_use(t); ++i) {
    if (t.backends[i].state.load(relaxed) == shm::backend_state::removed) rows.push_back(i);
  }
  return rows;
}

std::string draining_json(const shm::table& t, std::size_t row) {
  const shm::backend_row& r = t.backends[row];
  return "{\"address\":" + json_string(std::string(shm::address_of(r))) +
         ",\"state\":\"removed\",\"active\":" + std::to_string(shm::sum_active(t, row)) + "}";
}

std::string draining_text(const shm::table& t, std::size_t row) {
  const shm::backend_row& r = t.backends[row];
  char line[160];
  std::snprintf(line, sizeof line, "%-28s removed, draining        active %llu",
                std::string(shm::address_of(r)).c_str(),
                static_cast<unsigned long long>(shm::sum_active(t, row)));
  return line;
}

}  // namespace

std::string backend_json(const shm::table& t, const backend_config& b) {
  const shm::backend_row& row = t.backends[b.row];
  return "{\"address\":" + json_string(b.where.to_string()) + ",\"state\":\"active\"" +
         ",\"admin_state\":\"" +
         to_string(row.admin.load(relaxed)) + "\",\"health\":\"" +
         (row.healthy.load(relaxed) ? "up" : "down") +
         "\",\"weight\":" + std::to_string(row.weight.load(relaxed)) +
         ",\"configured_weight\":" + std::to_string(b.weight) +
         ",\"active\":" + std::to_string(shm::sum_active(t, b.row)) + "}";
}

std::string no_such_backend(const config& serving, const std::string& address) {
  std::string known;
  for (const auto& b : serving.backends) known += (known.empty() ? "" : ", ") + b.where.to_string();
  return "no backend '" + address + "' (configured: " + known + ")";
}

std::string backend_text(const shm::table& t, const backend_config& b) {
  const shm::backend_row& row = t.backends[b.row];
  char line[256];
  std::snprintf(line, sizeof line, "%-28s admin %-5s  health %-4s  weight %u%s  active %llu",
                b.where.to_string().c_str(), to_string(row.admin.load(relaxed)),
                row.healthy.load(relaxed) ? "up" : "down", row.weight.load(relaxed),
                row.weight.load(relaxed) == b.weight
                    ? ""
                    : (" (configured " + std::to_string(b.weight) + ")").c_str(),
                static_cast<unsigned long long>(shm::sum_active(t, b.row)));
  return line;
}

std::string master::state_file_path() const {
  return cfg_->state_file.empty() ? runtime_dir() + "/" + cfg_->name + ".state" : cfg_->state_file;
}

void master::apply_journal() {
  for (const std::string& d : journal_.apply(table_->get(), *cfg_)) {
    log_line(who, "runtime override of backend %s dropped", d.c_str());
  }
  for (const auto& [address, o] : journal_.overrides()) {
    log_line(who, "runtime override of backend %s applied: %s%s", address.c_str(),
             to_string(o.state),
             o.weight ? (", weight " + std::to_string(o.weight)).c_str() : "");
  }
}

void master::backend_command(const std::string& arguments, control_request_ptr request) {
  std::vector<std::string> words = words_of(arguments);
  const auto json_flag = std::find(words.begin(), words.end(), "--json");
  const bool json = json_flag != words.end();
  if (json) words.erase(json_flag);
  const auto refuse = [&](const std::string& why) {
    request->finish(false, json ? "{\"error\":" + json_string(why) + "}" : why);
  };
  if (words.empty()) return refuse("usage: " + std::string(backend_usage));
  if (stopping_) return refuse("the instance is stopping");
  shm::table& t = table_->get();
  const config& serving = *children_->serving().cfg();
  const std::string& verb = words[0];

  // The successor of an upgrade under way has taken the backends (the state file, and the
  // state export of a table of another layout) as they were when it started: a change now
  // would be lost with this master.
  if (verb != "list" && upgrade_.in_progress()) {
    return refuse("an upgrade is in progress; try again once it has answered");
  }

  if (verb == "list" && words.size() == 1) {
    const std::vector<std::size_t> draining = draining_rows(t);
    if (json) {
      std::string out = "[";
      for (const auto& b : serving.backends) {
        out += (out.size() > 1 ? "," : "") + backend_json(t, b);
      }
      for (std::size_t row : draining) out += (out.size() > 1 ? "," : "") + draining_json(t, row);
      return request->finish(true, out + "]");
    }
    for (const auto& b : serving.backends) request->send(backend_text(t, b) + "\n");
    for (std::size_t row : draining) request->send(draining_text(t, row) + "\n");
    return request->finish(true, std::to_string(serving.backends.size()) + " backends" +
                                     (draining.empty() ? std::string()
                                                       : ", " + std::to_string(draining.size()) +
                                                             " removed still draining"));
  }
  const bool changes_set = verb == "add" || verb == "remove";
  if (changes_set && children_->restart_pending()) return refuse(reload_in_progress);
  if (verb == "add" && words.size() == 2) return add_backend(words[1], json, request);
  if (verb == "remove" && (words.size() == 2 || words.size() == 3)) {
    std::uint32_t drain_ms = 0;
    if (words.size() == 3) {
      const std::string& w = words[2];
      auto [end, ec] = std::from_chars(w.data() + std::min<std::size_t>(w.size(), 6),
                                       w.data() + w.size(), drain_ms);
      if (w.rfind("drain=", 0) != 0 || ec != std::errc() || end != w.data() + w.size() ||
          drain_ms == 0) {
        return refuse("remove takes HOST:PORT and optionally drain=MILLISECONDS, not '" + w + "'");
      }
    }
    return remove_backend(words[1], drain_ms, json, request);
  }
  if (verb == "reset" && words.size() == 1) {
    if (children_->restart_pending()) return refuse(reload_in_progress);
    const std::size_t count = journal_.overrides().size() + undo_runtime_backends();
    const std::string saved = journal_.clear();
    journal_.apply(t, *children_->serving().cfg());
    log_line(who, "backend reset: %zu runtime overrides cleared", count);
    operations_.note("admin", "backend reset: " + std::to_string(count) + " overrides cleared");
    if (!saved.empty()) log_line(who, "%s", saved.c_str());
    return request->finish(true, json ? "{\"cleared\":" + std::to_string(count) + "}"
                                      : std::to_string(count) + " runtime overrides cleared");
  }

  shm::admin_state state = shm::admin_state::ready;
  const bool sets_state = parse_admin_state(verb, state) && words.size() == 2;
  const bool sets_weight = verb == "weight" && words.size() == 3;
  if (!sets_state && !sets_weight) return refuse("usage: " + std::string(backend_usage));
  const backend_config* target = nullptr;
  for (const auto& b : serving.backends) {
    if (b.where.to_string() == words[1]) target = &b;
  }
  if (target == nullptr) return refuse(no_such_backend(serving, words[1]));
  const auto found = journal_.overrides().find(words[1]);
  backend_override o = found != journal_.overrides().end() ? found->second : backend_override{};
  o.line = config_line(*target);
  if (sets_weight) {
    std::uint32_t weight = 0;
    auto [end, ec] = std::from_chars(words[2].data(), words[2].data() + words[2].size(), weight);
    if (ec != std::errc() || end != words[2].data() + words[2].size() || weight < 1 ||
        weight > 1000) {
      return refuse("weight '" + words[2] + "' is not a whole number from 1 to 1000");
    }
    o.weight = weight == target->weight ? 0 : weight;
  } else {
    o.state = state;
  }
  shm::backend_row& row = t.backends[target->row];
  const shm::admin_state before = row.admin.load(relaxed);
  const std::uint32_t weight_before = row.weight.load(relaxed);
  const std::string saved = journal_.set(words[1], o);
  // The table is the truth the workers pick from: once it holds the change, the answer goes.
  journal_.apply(t, serving);
  const std::string change =
      sets_weight ? "weight " + std::to_string(weight_before) + " -> " +
                        std::to_string(row.weight.load(relaxed))
                  : std::string(to_string(before)) + " -> " + to_string(row.admin.load(relaxed));
  const bool changed = sets_weight ? weight_before != row.weight.load(relaxed)
                                   : before != row.admin.load(relaxed);
  const std::string text = "backend " + words[1] + " " + (changed ? change : "unchanged (" +
                           (sets_weight ? "weight " + std::to_string(weight_before)
                                        : std::string(to_string(before))) + ")");
  if (changed) {
    log_line(who, "%s", text.c_str());
    operations_.note("admin", text);
  }
  if (!saved.empty()) {
    log_line(who, "%s", saved.c_str());
    return request->finish(false, text + ", but the state file was not written: " + saved);
  }
  request->finish(true, json ? backend_json(t, *target) : text);
}

}  // namespace wslb::supervisor
