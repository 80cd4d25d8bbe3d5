#include <doctest/doctest.h>

#include "tests/unit/table_image.h"

#include <cstring>
#include <memory>

#include "cli/status_view.h"
#include "shm/table.h"
#include "shm/table_ops.h"
#include "tls/certificate_rows.h"
#include "tls/ticket_keys.h"

using namespace wslb;

namespace {
std::unique_ptr<shm::table> sample_table() {
  auto t = testing::fresh_table();
  shm::copy_fixed(t->header.name, shm::name_chars, "demo");
  shm::copy_fixed(t->header.listen, shm::address_chars, "127.0.0.1:8080");
  t->header.master_pid = 42;
  t->header.master_started_ms = 1'000'000;
  t->header.slot_high_water = 3;
  t->header.backend_high_water = 2;
  t->header.current_generation = 2;
  t->header.workers_per_generation = 2;
  for (int s = 0; s < 3; ++s) {
    t->workers[s].pid = 100 + s;
    t->workers[s].generation = s == 2 ? 1 : 2;
    t->workers[s].state = s == 2 ? shm::worker_state::draining : shm::worker_state::running;
  }
  t->workers[2].drain_deadline_ms = 1'010'000;
  for (int b = 0; b < 2; ++b) {
    t->backends[b].state = shm::backend_state::active;
    t->backends[b].weight = 1 + b;
    t->backends[b].healthy = b == 0;
    shm::copy_fixed(t->backends[b].address, shm::address_chars,
                    b == 0 ? "127.0.0.1:9001" : "127.0.0.1:9002");
  }
  t->workers[0].backends[0].active = 3;
  t->workers[1].backends[0].active = 4;
  t->workers[2].backends[0].active = 1;  // a draining worker's connections still count
  t->workers[0].connections = 3;
  t->backends[1].retired_total = 9;
  shm::write_last_error(t->backends[1], "connect \"refused\"");
  t->workers[0].errors[static_cast<int>(shm::error_kind::no_backend_503)] = 2;
  return t;
}
}  // namespace

TEST_CASE("status.json_has_the_contract_keys") {
  auto t = sample_table();
  const std::string j = cli::render_status_json(*t, 1'005'000);
  CHECK(j.find("\"name\":\"demo\"") != std::string::npos);
  CHECK(j.find("\"master_pid\":42") != std::string::npos);
  CHECK(j.find("\"listen\":\"127.0.0.1:8080\"") != std::string::npos);
  CHECK(j.find("\"uptime_s\":5") != std::string::npos);
  CHECK(j.find("\"generation\":2,\"workers_per_generation\":2") != std::string::npos);
  CHECK(j.find("{\"slot\":2,\"pid\":102,\"state\":\"draining\",\"generation\":1") !=
        std::string::npos);
  CHECK(j.find("\"drain_left_ms\":5000") != std::string::npos);
  CHECK(j.find("\"address\":\"127.0.0.1:9001\",\"state\":\"active\",\"weight\":1,\"active\":8") !=
        std::string::npos);
  CHECK(j.find("\"total\":9") != std::string::npos);
  CHECK(j.find("\"healthy\":false") != std::string::npos);
  CHECK(j.find("\"last_error\":\"connect \\\"refused\\\"\"") != std::string::npos);
  CHECK(j.find("\"503_no_backend\":2") != std::string::npos);
}

TEST_CASE("status.text_shows_generations_and_health") {
  auto t = sample_table();
  const std::string text = cli::render_status_text(*t, 1'005'000);
  CHECK(text.find("generation 2 (2 workers)") != std::string::npos);
  CHECK(text.find("draining") != std::string::npos);
  CHECK(text.find("drain ends in 5 s") != std::string::npos);
  CHECK(text.find("DOWN") != std::string::npos);
  CHECK(text.find("503_no_backend=2") != std::string::npos);
}

TEST_CASE("status.escapes_and_bounds_text_from_the_table") {
  auto t = sample_table();
  // A forged or torn table: terminal escapes in the name, an address with no NUL at all.
  shm::copy_fixed(t->header.name, shm::name_chars, "evil\x1b]0;pwned\x07\n");
  std::memset(t->backends[0].address, 'A', shm::address_chars);
  shm::write_last_error(t->backends[1], "bad\x1b[2J\\end");
  const std::string text = cli::render_status_text(*t, 1'005'000);
  const std::string json = cli::render_status_json(*t, 1'005'000);
  for (const std::string& out : {text, json}) {
    CHECK(out.find('\x1b') == std::string::npos);
    CHECK(out.find('\x07') == std::string::npos);
    CHECK(out.find(std::string(shm::address_chars, 'A')) != std::string::npos);
    CHECK(out.find(std::string(shm::address_chars + 1, 'A')) == std::string::npos);
  }
  CHECK(text.find("evil\\x1b]0;pwned\\x07\\x0a") != std::string::npos);
  CHECK(text.find("bad\\x1b[2J\\x5cend") != std::string::npos);
  // In JSON the escape's backslash is itself escaped: a reader gets the same text as people.
  CHECK(json.find("\"name\":\"evil\\\\x1b]0;pwned\\\\x07\\\\x0a\"") != std::string::npos);
}

TEST_CASE("status.printable_text_keeps_printable_ascii") {
  CHECK(cli::printable_text("127.0.0.1:9001 ok") == "127.0.0.1:9001 ok");
  CHECK(cli::printable_text(std::string("a\0b", 3)) == "a\\x00b");
  CHECK(cli::printable_text("\xc3\xa9") == "\\xc3\\xa9");
}

TEST_CASE("status.names_the_rebalance_mode") {
  auto t = sample_table();
  const std::pair<std::uint32_t, const char*> modes[] = {{0, "off"}, {1, "manual"}, {2, "auto"}};
  for (const auto& [mode, name] : modes) {
    t->header.rebalance_mode = mode;
    CHECK(cli::render_status_json(*t, 1'005'000).find(std::string("\"rebalance\":{\"mode\":\"") +
                                                      name + "\"") != std::string::npos);
    CHECK(cli::render_status_text(*t, 1'005'000).find(std::string("REBALANCE ") + name + ",") !=
          std::string::npos);
  }
}

TEST_CASE("status.tls_certificates_with_days_left") {
  auto t = sample_table();
  CHECK(cli::render_status_json(*t, 1'005'000).find("\"tls\":null") != std::string::npos);
  CHECK(cli::render_status_text(*t, 1'005'000).find("TLS") == std::string::npos);

  const std::int64_t day = 86'400'000;
  tls::certificate_info a, b;
  a.subject = "CN=alpha.test";
  a.key_kind = "ECDSA prime256v1";
  a.not_after_ms = 1'005'000 + 90 * day;
  b.subject = "CN=beta.test\x1b[2J";  // a subject is the certificate's text: escaped
  b.key_kind = "RSA 2048";
  b.not_after_ms = 1'005'000 + 3 * day + 5;
  tls::publish_certificates(t->tls, {a, b});
  REQUIRE(tls::rotate_ticket_keys(t->tls, 1'000'000));
  t->workers[0].tls_handshakes = 7;
  t->workers[1].tls_handshakes = 3;
  t->workers[1].tls_resumed = 2;
  t->workers[2].tls_failed = 4;
  t->workers[0].tls_abandoned = 1;
  t->workers[1].tls_parked = 6;
  t->workers[2].tls_parked = 5;

  const std::string json = cli::render_status_json(*t, 1'005'000);
  CHECK(json.find("\"tls\":{\"certificates\":[{\"subject\":\"CN=alpha.test\",\"key\":"
                  "\"ECDSA prime256v1\",\"not_after_ms\":7777005000,\"days_left\":90,"
                  "\"expiring\":false},{\"subject\":\"CN=beta.test\\\\x1b[2J\",\"key\":\"RSA "
                  "2048\",\"not_after_ms\":260205005,\"days_left\":3,\"expiring\":true}],"
                  "\"ticket_keys\":1,\"ticket_key_age_s\":5,\"handshakes\":10,\"resumed\":2,"
                  "\"failed\":4,\"abandoned\":1,\"parked\":11}") != std::string::npos);
  const std::string text = cli::render_status_text(*t, 1'005'000);
  CHECK(text.find("TLS CERTIFICATES\n  CN=alpha.test  ECDSA prime256v1  expires 1970-04-01 00:16 "
                  "UTC (90 days left)\n  CN=beta.test\\x1b[2J  RSA 2048  expires 1970-01-04 "
                  "00:16 UTC (3 days left, RENEW SOON)\n  session-ticket keys: 1, current one 5 s "
                  "old\n  handshakes 10 (resumed 2), failed 4, abandoned 1; connections parked "
                  "11\n") != std::string::npos);
}
