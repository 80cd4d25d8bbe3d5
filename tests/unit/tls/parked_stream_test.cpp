// A parked engine against a real OpenSSL client in memory: the client keeps its SSL object
// and cannot tell that the server freed its own.
#include "tls/parked_stream.h"

#include <openssl/err.h>

#include <string>

#include <doctest/doctest.h>

#include "common/log.h"
#include "tests/unit/tls/test_pki.h"
#include "tests/unit/tls/tls_client.h"
#include "tls/engine.h"
#include "tls/server_context.h"

using namespace wslb;
using namespace wslb::testing;

namespace {

struct one_site {
  temp_dir dir;
  pem_pair site = make_pem_pair(dir, "site", key_type::ecdsa, {"site.test", {"site.test"}});
  std::shared_ptr<tls::server_context> load() {
    tls::server_settings s;
    s.certificates = {{site.cert_file, site.key_file}};
    std::string error;
    auto ctx = tls::server_context::load(s, unix_ms(), error);
    REQUIRE_MESSAGE(ctx != nullptr, error);
    return ctx;
  }
};

// The client writes `data`; the server reads what arrives.
void client_sends(tls_client& c, server_side& side, const std::string& data) {
  std::size_t n = 0;
  REQUIRE(SSL_write_ex(c.ssl, data.data(), data.size(), &n) == 1);
  side.consume(c.take_output());
}

// The server writes `data`; returns what the client reads (after anything sent before it).
std::string server_sends(server_side& side, tls_client& c, const std::string& data) {
  REQUIRE(side.e.write(data.data(), data.size()));
  c.give_input(side.io.output());
  side.io.output().clear();
  return c.read_plain();
}

std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + i % 23);
  return s;
}

// The reason of the alert the client received (1000 + the alert description), or 0.
int client_alert_after(tls_client& c, server_side& side) {
  c.give_input(side.io.output());
  side.io.output().clear();
  ERR_clear_error();
  char buf[64];
  std::size_t n = 0;
  if (SSL_read_ex(c.ssl, buf, sizeof buf, &n) == 1) return 0;
  const int reason = ERR_GET_REASON(ERR_peek_last_error());
  ERR_clear_error();
  return reason >= SSL_AD_REASON_OFFSET ? reason : 0;
}

// A connection just established (TLS 1.3 unless `max_version` says otherwise).
struct fresh_connection {
  one_site site;
  std::shared_ptr<tls::server_context> server = site.load();
  server_side side{*server};
  tls_client c;

  explicit fresh_connection(int max_version = 0, const char* suite = nullptr)
      : c("", "", nullptr, max_version) {
    if (suite != nullptr) REQUIRE(SSL_set_ciphersuites(c.ssl, suite) == 1);
    REQUIRE(side.handshake(c));
  }
};

// An established, parked connection (after some traffic each way, so that both sequence
// numbers have moved from where the handshake left them).
struct parked_connection : fresh_connection {
  explicit parked_connection(const char* suite = nullptr) : fresh_connection(0, suite) {
    client_sends(c, side, "GET / HTTP/1.1\r\n\r\n");
    CHECK(server_sends(side, c, "HTTP/1.1 101 Switching Protocols\r\n\r\n").size() == 36);
    CHECK(server_sends(side, c, "frame").size() == 5);
    side.view.plain.clear();
    REQUIRE(side.e.park());
  }
};

}  // namespace

TEST_CASE("parked_stream.carries_each_suite_on_after_the_ssl_is_freed") {
  for (const char* suite : {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                            "TLS_CHACHA20_POLY1305_SHA256"}) {
    CAPTURE(suite);
    parked_connection p(suite);
    CHECK(p.side.e.parked());
    CHECK(p.side.e.native() == nullptr);
    CHECK(p.side.e.handshake_done());
    CHECK(p.side.e.version() == "TLSv1.3");
    CHECK(std::string(SSL_CIPHER_get_name(SSL_get_current_cipher(p.c.ssl))) == suite);

    client_sends(p.c, p.side, "x");
    CHECK(p.side.view.plain == "x");
    const std::string big = pattern(1 << 20);  // 64 records and more, each way
    p.side.view.plain.clear();
    client_sends(p.c, p.side, big);
    CHECK(p.side.view.plain == big);
    CHECK(server_sends(p.side, p.c, big) == big);
    CHECK(server_sends(p.side, p.c, "y") == "y");
    CHECK_FALSE(p.side.view.failed);
  }
}

TEST_CASE("parked_stream.record_split_across_reads") {
  parked_connection p;
  const std::string msg = pattern(3000);
  std::size_t n = 0;
  REQUIRE(SSL_write_ex(p.c.ssl, msg.data(), msg.size(), &n) == 1);
  const std::string wire = p.c.take_output();
  for (char byte : wire) p.side.consume(std::string(1, byte));  // one byte per read
  CHECK(p.side.view.plain == msg);
  // Two records and a half in one read, the rest in the next.
  std::string two;
  for (int i = 0; i < 3; ++i) {
    REQUIRE(SSL_write_ex(p.c.ssl, msg.data(), msg.size(), &n) == 1);
    two += p.c.take_output();
  }
  p.side.view.plain.clear();
  p.side.consume(two.substr(0, two.size() - 100));
  CHECK(p.side.view.plain.size() == 2 * msg.size());
  p.side.consume(two.substr(two.size() - 100));
  CHECK(p.side.view.plain == msg + msg + msg);
}

TEST_CASE("parked_stream.client_key_update_requested_and_not") {
  for (const int kind : {SSL_KEY_UPDATE_REQUESTED, SSL_KEY_UPDATE_NOT_REQUESTED}) {
    CAPTURE(kind);
    parked_connection p;
    for (int round = 0; round < 3; ++round) {
      REQUIRE(SSL_key_update(p.c.ssl, kind) == 1);
      client_sends(p.c, p.side, "after update");  // the KeyUpdate goes first
      CHECK(p.side.view.plain == "after update");
      p.side.view.plain.clear();
      // With update_requested the server's answer precedes its data, under its old key.
      CHECK(server_sends(p.side, p.c, "reply") == "reply");
    }
    CHECK_FALSE(p.side.view.failed);
  }
}

TEST_CASE("parked_stream.close_notify_both_ways") {
  parked_connection p;
  REQUIRE(SSL_shutdown(p.c.ssl) == 0);  // the client's close_notify is out
  p.side.consume(p.c.take_output());
  CHECK(p.side.view.closed);
  p.side.e.close_notify();
  p.side.e.close_notify();  // once only
  p.c.give_input(p.side.io.output());
  p.side.io.output().clear();
  CHECK(SSL_shutdown(p.c.ssl) == 1);  // the server's arrived: both sides closed cleanly
  CHECK((SSL_get_shutdown(p.c.ssl) & SSL_RECEIVED_SHUTDOWN) != 0);
  CHECK_FALSE(p.side.e.write("late", 4));
}

TEST_CASE("parked_stream.tampered_record_is_bad_record_mac") {
  parked_connection p;
  std::size_t n = 0;
  REQUIRE(SSL_write_ex(p.c.ssl, "secret", 6, &n) == 1);
  std::string wire = p.c.take_output();
  wire[8] = static_cast<char>(wire[8] ^ 0x40);
  p.side.consume(wire);
  CHECK(p.side.view.failed);
  CHECK(p.side.view.plain.empty());
  CHECK(client_alert_after(p.c, p.side) == SSL_AD_REASON_OFFSET + SSL_AD_BAD_RECORD_MAC);
  CHECK_FALSE(p.side.e.write("x", 1));  // nothing more after a fatal alert
}

TEST_CASE("parked_stream.refuses_oversized_and_unprotected_records") {
  SUBCASE("over 2^14 + 256") {
    parked_connection p;
    std::string wire("\x17\x03\x03\x41\x01", 5);  // 16641
    wire += std::string(100, 'z');
    p.side.consume(wire);
    CHECK(p.side.view.failed);
    CHECK(client_alert_after(p.c, p.side) == SSL_AD_REASON_OFFSET + SSL_AD_RECORD_OVERFLOW);
  }
  SUBCASE("a plaintext handshake record") {
    parked_connection p;
    p.side.consume(std::string("\x16\x03\x03\x00\x05\x18\x00\x00\x01\x00", 10));
    CHECK(p.side.view.failed);
    CHECK(client_alert_after(p.c, p.side) ==
          SSL_AD_REASON_OFFSET + SSL_AD_UNEXPECTED_MESSAGE);
  }
  SUBCASE("a change_cipher_spec after the handshake") {
    parked_connection p;
    p.side.consume(std::string("\x14\x03\x03\x00\x01\x01", 6));
    CHECK(p.side.view.failed);
  }
}

TEST_CASE("parked_stream.stays_on_the_ssl_when_it_must") {
  SUBCASE("TLS 1.2") {
    fresh_connection f(TLS1_2_VERSION);
    CHECK_FALSE(f.side.e.park());
    CHECK(f.side.e.stream_for_test() == nullptr);  // let go: it will never park
    CHECK(server_sends(f.side, f.c, "still fine") == "still fine");
  }
  SUBCASE("a KeyUpdate while the SSL lived") {
    fresh_connection f;
    REQUIRE(SSL_key_update(f.c.ssl, SSL_KEY_UPDATE_NOT_REQUESTED) == 1);
    client_sends(f.c, f.side, "data");
    CHECK_FALSE(f.side.e.park());
    CHECK(f.side.e.stream_for_test() == nullptr);
    CHECK(f.side.view.plain == "data");
  }
  SUBCASE("half a record inside OpenSSL") {
    fresh_connection f;
    std::size_t n = 0;
    REQUIRE(SSL_write_ex(f.c.ssl, "abcdef", 6, &n) == 1);
    const std::string wire = f.c.take_output();
    f.side.consume(wire.substr(0, 10));
    CHECK_FALSE(f.side.e.park());
    CHECK_FALSE(f.side.e.parked());
    f.side.consume(wire.substr(10));
    CHECK(f.side.view.plain == "abcdef");
    CHECK(f.side.e.park());  // and now it can
    client_sends(f.c, f.side, "ghi");
    CHECK(f.side.view.plain == "abcdefghi");
  }
  SUBCASE("mid-handshake") {
    one_site site;
    auto server = site.load();
    server_side side(*server);
    CHECK_FALSE(side.e.park());
    CHECK(side.e.may_park());
  }
}
