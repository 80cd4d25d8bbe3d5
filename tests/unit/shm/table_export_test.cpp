#include <doctest/doctest.h>

#include <string>

#include "shm/table_export.h"
#include "shm/table_ops.h"
#include "tests/unit/table_image.h"

using namespace wslb::shm;
using wslb::testing::fresh_table;

namespace {

// A table as a master of a while would have it: backends changed at run time, health, two
// generations of workers with live connections, ticket keys.
std::unique_ptr<table> lived_in_table() {
  auto t = fresh_table();
  copy_fixed(t->header.name, name_chars, "app");
  copy_fixed(t->header.listen, address_chars, "127.0.0.1:8080");
  t->header.current_generation = 4;
  t->header.workers_per_generation = 2;
  t->header.backend_epoch = 9;
  t->header.round_robin_next = 12345;
  t->header.backend_high_water = 3;
  t->header.slot_high_water = 4;
  backend_row& a = t->backends[0];
  a.state = backend_state::active;
  a.weight = 3;
  a.maxconn = 100;
  a.slowstart_ms = 5000;
  a.admin = admin_state::drain;
  a.healthy = 1;
  a.check_streak = -2;  // negative numbers survive
  a.last_check_ms = 1'700'000'000'123;
  a.retired_total = 40;
  copy_fixed(a.address, address_chars, "10.0.0.5:80");
  a.tls = 1;
  copy_fixed(a.tls_sni, sizeof a.tls_sni, "app.internal");
  copy_fixed(a.tls_ca, sizeof a.tls_ca, "/etc/wslb/ca.pem");
  a.sockaddr_bytes[0] = 2;
  a.sockaddr_len = 16;
  write_last_error(a, "connect: refused = yes");  // spaces and '=' in a text
  backend_row& removed = t->backends[2];
  removed.state = backend_state::removed;
  copy_fixed(removed.address, address_chars, "10.0.0.7:80");
  for (std::size_t row : {0u, 1u, 3u}) {
    t->workers[row].state = worker_state::running;
    t->workers[row].pid = static_cast<std::int32_t>(1000 + row);
    t->workers[row].generation = row == 3 ? 3 : 4;
  }
  t->workers[0].backends[0].active = 5;
  t->workers[3].backends[0].active = 2;
  t->workers[3].backends[0].total = 7;
  t->workers[3].backends[2].active = 1;
  t->tls.key_count = 2;
  t->tls.keys_rotated_ms = 99;
  for (std::size_t i = 0; i < ticket_key_bytes / 8; ++i) {
    t->tls.keys[0].words[i] = 0x0102030405060708ULL * (i + 1);
    t->tls.keys[1].words[i] = ~std::uint64_t{i};
  }
  return t;
}

}  // namespace

TEST_CASE("table_export.rebuilds_the_live_state_in_a_fresh_table") {
  const auto old = lived_in_table();
  const std::string text = export_table(*old, {"wslb.1.app.aaaa", "wslb.1.app.bbbb"});
  CHECK(text.rfind("wslb-table-export 1\n", 0) == 0);
  const export_header head = read_export_header(text);
  CHECK(head.instance == "app");
  CHECK(head.names.segment == "wslb.1.app.aaaa");
  CHECK(head.names.successor == "wslb.1.app.bbbb");

  auto t = fresh_table();
  export_names names;
  REQUIRE(import_table(text, *t, names) == "");
  CHECK(names.successor == "wslb.1.app.bbbb");
  CHECK(std::string(t->header.name) == "app");
  CHECK(std::string(t->header.listen) == "127.0.0.1:8080");
  CHECK(t->header.current_generation == 4);
  CHECK(t->header.backend_epoch == 9);
  CHECK(t->header.round_robin_next == 12345);
  CHECK(t->header.backend_high_water == 3);
  const backend_row& a = t->backends[0];
  CHECK(a.state == backend_state::active);
  CHECK(a.weight == 3);
  CHECK(a.maxconn == 100);
  CHECK(a.slowstart_ms == 5000);
  CHECK(a.admin == admin_state::drain);
  CHECK(a.healthy == 1);
  CHECK(a.check_streak == -2);
  CHECK(a.last_check_ms == 1'700'000'000'123);
  CHECK(std::string(a.address) == "10.0.0.5:80");
  CHECK(a.sockaddr_bytes[0] == 2);
  CHECK(a.sockaddr_len == 16);
  CHECK(read_last_error(a) == "connect: refused = yes");
  CHECK(a.tls == 1);
  CHECK(std::string(a.tls_sni) == "app.internal");
  CHECK(std::string(a.tls_ca) == "/etc/wslb/ca.pem");
  CHECK(t->backends[2].tls == 0);
  // Totals go on; the live connections are inherited, none in a worker row of the new table.
  CHECK(a.retired_total == 47);
  CHECK(a.inherited_active == 7);
  CHECK(sum_active(*t, 0) == 0);
  // A removed backend keeps its row and state; its connections drain in the old workers.
  CHECK(t->backends[2].state == backend_state::removed);
  CHECK(t->backends[2].inherited_active == 0);
  // The old workers are shown as the predecessor's, and their rows are not free.
  for (std::size_t row : {0u, 1u, 3u}) {
    CHECK(t->workers[row].state == worker_state::predecessor);
    CHECK(t->workers[row].pid == static_cast<std::int32_t>(1000 + row));
  }
  CHECK(t->workers[3].generation == 3);
  CHECK(t->workers[2].state == worker_state::empty);
  CHECK(t->header.slot_high_water == 4);
  CHECK(t->tls.key_count == 2);
  CHECK(t->tls.keys_rotated_ms == 99);
  for (std::size_t i = 0; i < ticket_key_bytes / 8; ++i) {
    CHECK(t->tls.keys[0].words[i] == old->tls.keys[0].words[i]);
    CHECK(t->tls.keys[1].words[i] == old->tls.keys[1].words[i]);
  }
}

TEST_CASE("table_export.a_newer_field_is_skipped_and_a_missing_one_is_zero") {
  auto t = fresh_table();
  export_names names;
  const std::string text =
      "wslb-table-export 1\n"
      "instance name=617070 future_field=7\n"
      "backend 1 weight=2 address=31302e302e302e353a3830 colour=blue\n";
  REQUIRE(import_table(text, *t, names) == "");
  CHECK(t->backends[1].weight == 2);
  CHECK(t->backends[1].maxconn == 0);
  CHECK(std::string(t->backends[1].address) == "10.0.0.5:80");
}

TEST_CASE("table_export.refuses_another_version_a_row_out_of_range_and_garbage") {
  auto t = fresh_table();
  export_names names;
  CHECK(import_table("wslb-table-export 2\n", *t, names) ==
        "export format 2, this wslb reads 1");
  CHECK(import_table("something else\n", *t, names) == "not a wslb table export");
  CHECK(import_table("wslb-table-export 1\nbackend 64 weight=1\n", *t, names)
            .find("backend row 64 is beyond") == 0);
  CHECK(import_table("wslb-table-export 1\nworker 3 pid=x\n", *t, names) ==
        "worker pid='x' is not a number");
  CHECK(import_table("wslb-table-export 1\nbackend 0 address=zz\n", *t, names) ==
        "backend address is not hex");
  // Nothing of a refused export was written.
  CHECK(t->backends[0].state == backend_state::empty);
  CHECK(t->workers[3].state == worker_state::empty);
}
