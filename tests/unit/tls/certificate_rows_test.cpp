#include "tls/certificate_rows.h"

#include <doctest/doctest.h>

#include "tests/unit/table_image.h"

using namespace wslb;

TEST_CASE("certificate_rows.publish_replaces_and_reads_back") {
  auto t = testing::fresh_table();
  CHECK(tls::read_published_certificates(t->tls).empty());
  tls::certificate_info a, b;
  a.subject = "CN=alpha.test";
  a.key_kind = "ECDSA prime256v1";
  a.not_after_ms = 1000;
  b.subject = "CN=beta.test," + std::string(300, 'O');  // longer than a row: truncated
  b.key_kind = "RSA 2048";
  b.not_after_ms = 2000;
  tls::publish_certificates(t->tls, {a, b});
  auto rows = tls::read_published_certificates(t->tls);
  REQUIRE(rows.size() == 2);
  CHECK(rows[0].subject == "CN=alpha.test");
  CHECK(rows[0].key_kind == "ECDSA prime256v1");
  CHECK(rows[0].not_after_ms == 1000);
  CHECK(rows[1].subject.size() == shm::subject_chars - 1);
  CHECK(rows[1].not_after_ms == 2000);

  tls::publish_certificates(t->tls, {b});  // a reload with one certificate left
  rows = tls::read_published_certificates(t->tls);
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].key_kind == "RSA 2048");
}
