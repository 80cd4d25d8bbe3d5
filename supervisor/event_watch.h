// Recent events of an instance for the dashboard: a backend going down or up, added or
// removed, a generation taking over, a worker restarted, a reload and its result. Most are
// seen by comparing the table with what it held at the previous look (the master looks every
// housekeeping tick, so no process has to report them); the master notes the rest itself.
// Keeps the last `capacity` events, numbered, so a reader asks only for what it has not seen.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <string>

#include "shm/layout.h"

namespace wslb::supervisor {

struct instance_event {
  std::uint64_t seq = 0;
  std::int64_t unix_ms = 0;
  std::string kind;  // "backend_down", "backend_up", "backend_added", "backend_removed",
                     // "generation", "worker_restart", "reload", "admin"
  std::string text;
};

class event_watch {
 public:
  static constexpr std::size_t capacity = 200;

  // Compares `t` with the previous look and records what changed. The first look only
  // remembers. Master only.
  void observe(const shm::table& t, std::int64_t now_unix_ms);
  // Records an event the table does not show (a reload refused, a runtime command).
  void note(std::string kind, std::string text, std::int64_t now_unix_ms);

  // The events numbered above `after_seq`, oldest first, as a JSON array.
  std::string render_json(std::uint64_t after_seq) const;
  const std::deque<instance_event>& events() const { return events_; }

 private:
  struct backend_seen {
    shm::backend_state state = shm::backend_state::empty;
    bool healthy = true;
    std::string address;
  };
  struct worker_seen {
    std::uint32_t restarts = 0;
  };
  bool primed_ = false;
  std::uint32_t generation_ = 0;
  std::array<backend_seen, shm::max_backends> backends_{};
  std::array<worker_seen, shm::max_worker_slots> workers_{};
  std::deque<instance_event> events_;
  std::uint64_t next_seq_ = 1;
};

}  // namespace wslb::supervisor
