#include "supervisor/event_watch.h"

#include "cli/status_view.h"
#include "common/json_text.h"
#include "shm/table_ops.h"

namespace wslb::supervisor {

namespace {
constexpr auto relaxed = std::memory_order_relaxed;
}  // namespace

void event_watch::note(std::string kind, std::string text, std::int64_t now_unix_ms) {
  events_.push_back({next_seq_++, now_unix_ms, std::move(kind), std::move(text)});
  if (events_.size() > capacity) events_.pop_front();
}

void event_watch::observe(const shm::table& t, std::int64_t now) {
  const bool report = primed_;
  primed_ = true;
  const std::uint32_t generation = t.header.current_generation.load(relaxed);
  if (report && generation != generation_) {
    note("generation", "generation " + std::to_string(generation) + " took over", now);
  }
  generation_ = generation;
  for (std::size_t b = 0; b < shm::max_backends; ++b) {
    const shm::backend_row& row = t.backends[b];
    backend_seen now_seen{row.state.load(relaxed), row.healthy.load(relaxed) != 0, row.address};
    backend_seen& before = backends_[b];
    const bool was_listed = before.state != shm::backend_state::empty;
    const bool is_listed = now_seen.state != shm::backend_state::empty;
    if (report && is_listed && (!was_listed || before.address != now_seen.address)) {
      note("backend_added", "backend " + now_seen.address + " added", now);
    } else if (report && was_listed && is_listed) {
      if (before.state == shm::backend_state::active &&
          now_seen.state == shm::backend_state::removed) {
        note("backend_removed", "backend " + now_seen.address + " removed: draining", now);
      }
      if (before.healthy && !now_seen.healthy) {
        const std::string why = shm::read_last_error(row);
        note("backend_down",
             "backend " + now_seen.address + " down" + (why.empty() ? "" : ": " + why), now);
      } else if (!before.healthy && now_seen.healthy) {
        note("backend_up", "backend " + now_seen.address + " up", now);
      }
    }
    before = std::move(now_seen);
  }
  for (std::size_t s = 0; s < shm::max_worker_slots; ++s) {
    const shm::worker_row& row = t.workers[s];
    const std::uint32_t restarts = row.restarts.load(relaxed);
    if (report && restarts > workers_[s].restarts) {
      note("worker_restart", "worker " + std::to_string(s) + " restarted (pid " +
                                 std::to_string(row.pid.load(relaxed)) + ", " +
                                 cli::to_string(row.state.load(relaxed)) + ")",
           now);
    }
    workers_[s].restarts = restarts;
  }
}

std::string event_watch::render_json(std::uint64_t after_seq) const {
  std::string out = "[";
  bool first = true;
  for (const instance_event& e : events_) {
    if (e.seq <= after_seq) continue;
    out += first ? "" : ",";
    first = false;
    out += "{\"seq\":" + std::to_string(e.seq) + ",\"unix_ms\":" + std::to_string(e.unix_ms) +
           ",\"kind\":" + json_string(e.kind) + ",\"text\":" + json_string(e.text) + "}";
  }
  return out + "]\n";
}

}  // namespace wslb::supervisor
