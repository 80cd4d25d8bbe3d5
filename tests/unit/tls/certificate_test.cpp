#include "tls/certificate.h"

#include <sys/stat.h>
#include <unistd.h>


#include <doctest/doctest.h>

#include "common/log.h"
#include "tests/unit/tls/test_pki.h"

using namespace wslb;
using namespace wslb::testing;


TEST_CASE("certificate.loads_ecdsa_and_rsa_with_info") {
  temp_dir dir;
  for (key_type type : {key_type::ecdsa, key_type::rsa}) {
    const pem_pair p = make_pem_pair(dir, "site", type,
                                     {"example.test", {"example.test", "*.example.test"}});
    tls::certificate c;
    std::string error;
    REQUIRE_MESSAGE(tls::load_certificate(p.cert_file, p.key_file, unix_ms(), c, error), error);
    CHECK(c.info.subject == "CN=example.test");
    CHECK(c.info.key_kind == (type == key_type::ecdsa ? "ECDSA prime256v1" : "RSA 2048"));
    CHECK(c.info.dns_names == std::vector<std::string>{"example.test", "*.example.test"});
    CHECK(c.info.days_left(unix_ms()) == 29);
  }
}

TEST_CASE("certificate.reads_the_chain_after_the_leaf") {
  temp_dir dir;
  auto ca_key = make_key(key_type::ecdsa);
  auto ca = make_cert({"Test CA", {}, -3600, 86400 * 10, true}, ca_key.get());
  auto key = make_key(key_type::ecdsa);
  auto leaf = make_cert({"leaf.test", {"leaf.test"}}, key.get(), ca.get(), ca_key.get());
  const std::string cert_file = dir.write_cert("chain.pem", {leaf.get(), ca.get()});
  const std::string key_file = dir.write_key("leaf.key", key.get());
  tls::certificate c;
  std::string error;
  REQUIRE_MESSAGE(tls::load_certificate(cert_file, key_file, unix_ms(), c, error), error);
  CHECK(c.chain.size() == 1);
  CHECK(c.info.subject == "CN=leaf.test");
}

TEST_CASE("certificate.errors_name_the_flag_and_the_file") {
  temp_dir dir;
  const pem_pair a = make_pem_pair(dir, "a", key_type::ecdsa, {"a.test", {"a.test"}});
  const pem_pair b = make_pem_pair(dir, "b", key_type::rsa, {"b.test", {"b.test"}});
  tls::certificate c;
  std::string error;

  SUBCASE("missing certificate") {
    const std::string missing = (dir.path / "nope.pem").string();
    CHECK_FALSE(tls::load_certificate(missing, a.key_file, unix_ms(), c, error));
    CHECK(error == "--tls-cert: cannot read '" + missing + "': No such file or directory");
  }
  SUBCASE("missing key") {
    const std::string missing = (dir.path / "nope.key").string();
    CHECK_FALSE(tls::load_certificate(a.cert_file, missing, unix_ms(), c, error));
    CHECK(error == "--tls-key: cannot read '" + missing + "': No such file or directory");
  }
  SUBCASE("unreadable key") {
    if (geteuid() == 0) return;  // root reads anything
    chmod(a.key_file.c_str(), 0);
    CHECK_FALSE(tls::load_certificate(a.cert_file, a.key_file, unix_ms(), c, error));
    CHECK(error == "--tls-key: cannot read '" + a.key_file + "': Permission denied");
  }
  SUBCASE("key where the certificate should be") {
    CHECK_FALSE(tls::load_certificate(a.key_file, a.key_file, unix_ms(), c, error));
    CHECK(error == "--tls-cert: '" + a.key_file + "' holds no PEM certificate");
  }
  SUBCASE("certificate where the key should be") {
    CHECK_FALSE(tls::load_certificate(a.cert_file, a.cert_file, unix_ms(), c, error));
    CHECK(error.starts_with("--tls-key: '" + a.cert_file + "' holds no PEM private key"));
  }
  SUBCASE("mismatched key") {
    CHECK_FALSE(tls::load_certificate(a.cert_file, b.key_file, unix_ms(), c, error));
    CHECK(error == "--tls-key: '" + b.key_file + "' does not match the certificate in '" +
                       a.cert_file + "'");
  }
  SUBCASE("expired") {
    const pem_pair old =
        make_pem_pair(dir, "old", key_type::ecdsa, {"old.test", {"old.test"}, -86400 * 10, -86400});
    CHECK_FALSE(tls::load_certificate(old.cert_file, old.key_file, unix_ms(), c, error));
    CHECK(error.starts_with("--tls-cert: '" + old.cert_file + "' expired on "));
    CHECK(error.ends_with(" UTC"));
  }
  SUBCASE("not yet valid") {
    const pem_pair early =
        make_pem_pair(dir, "early", key_type::ecdsa, {"e.test", {"e.test"}, 86400, 86400 * 5});
    CHECK_FALSE(tls::load_certificate(early.cert_file, early.key_file, unix_ms(), c, error));
    CHECK(error.starts_with("--tls-cert: '" + early.cert_file + "' is not valid before "));
  }
}

TEST_CASE("certificate.days_left_rounds_towards_expiry") {
  tls::certificate_info info;
  info.not_after_ms = 10 * 86'400'000LL;
  CHECK(info.days_left(0) == 10);
  CHECK(info.days_left(1) == 9);
  CHECK(info.days_left(10 * 86'400'000LL + 1) == -1);
  CHECK(tls::format_utc(0) == "1970-01-01 00:00 UTC");
}
