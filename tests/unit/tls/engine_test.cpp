#include "tls/engine.h"

#include <string>

#include <doctest/doctest.h>

#include "common/log.h"
#include "tests/unit/table_image.h"
#include "tests/unit/tls/test_pki.h"
#include "tests/unit/tls/tls_client.h"
#include "tls/server_context.h"
#include "tls/ticket_keys.h"

using namespace wslb;
using namespace wslb::testing;

namespace {

// A CA and two sites it signed: "alpha" (ECDSA, the default) and "beta" (RSA, *.beta.test).
struct two_sites {
  temp_dir dir;
  tls::pkey_ptr ca_key = make_key(key_type::ecdsa);
  tls::x509_ptr ca = make_cert({"wslb test CA", {}, -3600, 86400, true}, ca_key.get());
  std::string ca_file = dir.write_cert("ca.pem", {ca.get()});
  pem_pair alpha = make_pem_pair(dir, "alpha", key_type::ecdsa, {"alpha.test", {"alpha.test"}},
                                 ca.get(), ca_key.get());
  pem_pair beta = make_pem_pair(dir, "beta", key_type::rsa,
                                {"beta.test", {"beta.test", "*.beta.test"}}, ca.get(),
                                ca_key.get());

  std::shared_ptr<tls::server_context> load(tls::tls_version min = tls::tls_version::tls1_2) {
    tls::server_settings s;
    s.certificates = {{alpha.cert_file, alpha.key_file}, {beta.cert_file, beta.key_file}};
    s.min_version = min;
    std::string error;
    auto ctx = tls::server_context::load(s, unix_ms(), error);
    REQUIRE_MESSAGE(ctx != nullptr, error);
    return ctx;
  }
};

std::string peer_subject(const tls_client& c) {
  X509* x = SSL_get0_peer_certificate(c.ssl);
  REQUIRE(x != nullptr);
  char buf[256];
  X509_NAME_oneline(X509_get_subject_name(x), buf, sizeof buf);
  return buf;
}

}  // namespace

TEST_CASE("engine.handshake_then_data_both_ways") {
  two_sites sites;
  auto server = sites.load();
  server_side side(*server);
  tls_client c(sites.ca_file, "alpha.test");
  REQUIRE(side.handshake(c));
  CHECK(SSL_get_verify_result(c.ssl) == X509_V_OK);
  CHECK(side.e.version() == "TLSv1.3");
  CHECK(side.e.alpn() == "http/1.1");
  CHECK(side.e.server_name() == "alpha.test");

  // Client to server: bigger than one record and than the read buffer of server_consume.
  const std::string big(100'000, 'x');
  REQUIRE(SSL_write(c.ssl, big.data(), static_cast<int>(big.size())) == static_cast<int>(big.size()));
  side.consume(c.take_output());
  CHECK(side.view.plain == big);
  CHECK(side.io.output().empty());

  // Server to client.
  REQUIRE(side.e.write("hello", 5));
  c.give_input(side.io.output());
  side.io.output().clear();
  CHECK(c.read_plain() == "hello");
}

TEST_CASE("engine.sni_picks_the_certificate_first_is_default") {
  two_sites sites;
  auto server = sites.load();
  struct expectation {
    std::string sni;
    std::string subject;
  };
  for (const expectation& x : {expectation{"alpha.test", "/CN=alpha.test"},
                               expectation{"beta.test", "/CN=beta.test"},
                               expectation{"www.beta.test", "/CN=beta.test"},
                               expectation{"other.test", "/CN=alpha.test"},
                               expectation{"", "/CN=alpha.test"}}) {
    CAPTURE(x.sni);
    server_side side(*server);
    tls_client c("", x.sni);  // no verification: the unnamed and unknown names get the default
    REQUIRE(side.handshake(c));
    CHECK(peer_subject(c) == x.subject);
  }
}

TEST_CASE("engine.tls12_and_min_version") {
  two_sites sites;
  {
    auto server = sites.load();
    server_side side(*server);
    tls_client c(sites.ca_file, "beta.test", nullptr, TLS1_2_VERSION);
    REQUIRE(side.handshake(c));
    CHECK(side.e.version() == "TLSv1.2");
    const std::string cipher = SSL_get_cipher_name(c.ssl);
    CHECK(std::string(tls::default_cipher_list).find(cipher) != std::string::npos);
  }
  {
    auto server = sites.load(tls::tls_version::tls1_3);
    server_side side(*server);
    tls_client c(sites.ca_file, "beta.test", nullptr, TLS1_2_VERSION);
    CHECK_FALSE(side.handshake(c));
    CHECK(side.view.failed);
  }
}

TEST_CASE("engine.refuses_ciphers_outside_the_list") {
  two_sites sites;
  auto server = sites.load();
  server_side side(*server);
  tls_client c(sites.ca_file, "alpha.test", nullptr, TLS1_2_VERSION);
  REQUIRE(SSL_set_cipher_list(c.ssl, "ECDHE-ECDSA-AES128-SHA") == 1);  // CBC, no AEAD
  CHECK_FALSE(side.handshake(c));
  CHECK(side.view.failed);
}

TEST_CASE("engine.resumes_by_ticket_across_contexts_sharing_the_table") {
  two_sites sites;
  auto table = fresh_table();
  REQUIRE(tls::rotate_ticket_keys(table->tls, 1));
  // Two workers: each has its own server context (as after fork), both read the same keys.
  auto first_worker = sites.load();
  auto second_worker = sites.load();
  first_worker->use_ticket_keys(&table->tls);
  second_worker->use_ticket_keys(&table->tls);

  SSL_SESSION* session = nullptr;
  {
    server_side side(*first_worker);
    tls_client c(sites.ca_file, "beta.test");
    REQUIRE(side.handshake(c));
    CHECK_FALSE(side.e.resumed());
    session = SSL_get1_session(c.ssl);
    REQUIRE(session != nullptr);
    CHECK(SSL_SESSION_is_resumable(session) == 1);
    // A clean close: OpenSSL marks the session of a connection freed without one unresumable.
    SSL_shutdown(c.ssl);
  }
  auto resume_on = [&](tls::server_context& worker) {
    server_side side(worker);
    tls_client c(sites.ca_file, "beta.test", session);
    REQUIRE(side.handshake(c));
    CHECK(peer_subject(c) == "/CN=beta.test");
    const bool resumed = side.e.resumed() && SSL_session_reused(c.ssl) == 1;
    SSL_shutdown(c.ssl);
    return resumed;
  };
  CHECK(resume_on(*second_worker));
  // After one rotation the ticket's key is the previous one: still accepted.
  REQUIRE(tls::rotate_ticket_keys(table->tls, 2));
  CHECK(resume_on(*first_worker));
  // After two it is forgotten: a full handshake, which still succeeds.
  REQUIRE(tls::rotate_ticket_keys(table->tls, 3));
  CHECK_FALSE(resume_on(*second_worker));
  // A worker without the table issues no tickets and resumes nothing.
  second_worker->use_ticket_keys(nullptr);
  CHECK_FALSE(resume_on(*second_worker));
  SSL_SESSION_free(session);
}

TEST_CASE("engine.close_notify_both_ways") {
  two_sites sites;
  auto server = sites.load();
  server_side side(*server);
  tls_client c(sites.ca_file, "alpha.test");
  REQUIRE(side.handshake(c));

  side.e.close_notify();
  side.e.close_notify();  // once only
  c.give_input(side.io.output());
  side.io.output().clear();
  c.read_plain();
  CHECK((SSL_get_shutdown(c.ssl) & SSL_RECEIVED_SHUTDOWN) != 0);
  SSL_shutdown(c.ssl);
  side.consume(c.take_output());
  CHECK(side.view.closed);
  CHECK_FALSE(side.view.failed);
}

TEST_CASE("engine.garbage_and_plain_http_fail_cleanly") {
  two_sites sites;
  auto server = sites.load();
  for (const std::string& junk :
       {std::string("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), std::string(300, '\x16'),
        std::string("\x16\x03\x01\x00\x05hello", 10)}) {
    server_side side(*server);
    side.consume(junk);
    CHECK(side.view.failed);
    CHECK_FALSE(side.e.handshake_done());
  }
  // A partial ClientHello is not an error: the engine waits for more.
  server_side side(*server);
  tls_client c(sites.ca_file, "alpha.test");
  SSL_do_handshake(c.ssl);
  const std::string hello = c.take_output();
  side.consume(hello.substr(0, 20));
  CHECK_FALSE(side.view.failed);
  CHECK(side.io.output().empty());
  side.consume(hello.substr(20));
  CHECK_FALSE(side.view.failed);
  CHECK_FALSE(side.io.output().empty());  // the server's flight
}
