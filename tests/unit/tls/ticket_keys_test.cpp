#include "tls/ticket_keys.h"

#include <cstring>

#include <doctest/doctest.h>

#include "tests/unit/table_image.h"

using namespace wslb;

TEST_CASE("ticket_keys.rotation_keeps_the_previous_key") {
  auto t = testing::fresh_table();
  CHECK(tls::read_ticket_keys(t->tls).count == 0);

  REQUIRE(tls::rotate_ticket_keys(t->tls, 1000));
  const tls::ticket_key_set first = tls::read_ticket_keys(t->tls);
  CHECK(first.count == 1);
  CHECK(t->tls.keys_rotated_ms.load() == 1000);

  REQUIRE(tls::rotate_ticket_keys(t->tls, 2000));
  const tls::ticket_key_set second = tls::read_ticket_keys(t->tls);
  CHECK(second.count == 2);
  CHECK(std::memcmp(&second.keys[1], &first.keys[0], sizeof first.keys[0]) == 0);
  CHECK(std::memcmp(second.keys[0].name, first.keys[0].name, 16) != 0);

  REQUIRE(tls::rotate_ticket_keys(t->tls, 3000));
  const tls::ticket_key_set third = tls::read_ticket_keys(t->tls);
  CHECK(third.count == 2);
  CHECK(std::memcmp(&third.keys[1], &second.keys[0], sizeof second.keys[0]) == 0);
  CHECK(t->tls.keys_seq.load() % 2 == 0);
}

TEST_CASE("ticket_keys.a_reader_retries_while_the_master_writes") {
  auto t = testing::fresh_table();
  REQUIRE(tls::rotate_ticket_keys(t->tls, 1000));
  t->tls.keys_seq.fetch_add(1);  // a master stopped mid-write: nothing consistent to read
  CHECK(tls::read_ticket_keys(t->tls).count == 0);
  t->tls.keys_seq.fetch_add(1);
  CHECK(tls::read_ticket_keys(t->tls).count == 1);
}
