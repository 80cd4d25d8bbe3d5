#include <doctest/doctest.h>

#include "tests/unit/table_image.h"

#include <string>
#include <vector>

#include "shm/table_ops.h"
#include "supervisor/event_watch.h"

using namespace wslb;

TEST_CASE("event_watch.reports_changes_after_the_first_look") {
  auto t = testing::fresh_table();
  t->backends[0].state = shm::backend_state::active;
  t->backends[0].healthy = 1;
  shm::copy_fixed(t->backends[0].address, shm::address_chars, "127.0.0.1:9001");
  t->header.current_generation = 1;
  supervisor::event_watch w;
  w.observe(*t, 1000);
  CHECK(w.events().empty());  // the first look only remembers

  t->backends[0].healthy = 0;
  shm::write_last_error(t->backends[0], "connect refused");
  t->workers[3].restarts = 1;
  t->workers[3].state = shm::worker_state::running;
  w.observe(*t, 2000);
  t->backends[0].healthy = 1;
  t->header.current_generation = 2;
  t->backends[0].state = shm::backend_state::removed;
  t->backends[1].state = shm::backend_state::active;
  shm::copy_fixed(t->backends[1].address, shm::address_chars, "127.0.0.1:9002");
  w.observe(*t, 3000);
  w.observe(*t, 4000);  // nothing changed: nothing new

  std::vector<std::string> kinds;
  for (const auto& e : w.events()) kinds.push_back(e.kind);
  CHECK(kinds == std::vector<std::string>{"backend_down", "worker_restart", "generation",
                                          "backend_removed", "backend_up", "backend_added"});
  CHECK(w.events().front().text == "backend 127.0.0.1:9001 down: connect refused");
  const std::string json = w.render_json(5);
  CHECK(json == "[{\"seq\":6,\"unix_ms\":3000,\"kind\":\"backend_added\",\"text\":\"backend "
                "127.0.0.1:9002 added\"}]\n");
}

TEST_CASE("event_watch.keeps_the_last_events_only") {
  supervisor::event_watch w;
  for (int i = 0; i < 250; ++i) w.note("admin", "n" + std::to_string(i), i);
  CHECK(w.events().size() == supervisor::event_watch::capacity);
  CHECK(w.events().front().seq == 51);
  CHECK(w.render_json(250) == "[]\n");
}
