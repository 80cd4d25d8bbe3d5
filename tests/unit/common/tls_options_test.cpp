#include <doctest/doctest.h>

#include "common/log.h"
#include "common/run_options.h"
#include "tests/unit/tls/test_pki.h"
#include "tls/server_context.h"

using namespace wslb;
using namespace wslb::testing;

namespace {
// Parses, then loads the certificates as `wslb run` does; the first error of either.
run_parse_result parse_with(std::vector<std::string> extra, config& c) {
  std::vector<std::string> args = {"--listen", "127.0.0.1:8443", "--backend", "127.0.0.1:9001"};
  args.insert(args.end(), extra.begin(), extra.end());
  run_parse_result r = parse_run_args(args, c);
  if (r.ok) {
    r.message = tls::load_listener_tls(c, unix_ms());
    r.ok = r.message.empty();
  }
  return r;
}
}  // namespace

TEST_CASE("run_options.tls_pairs_load_certificates") {
  temp_dir dir;
  const pem_pair a = make_pem_pair(dir, "a", key_type::ecdsa, {"a.test", {"a.test"}});
  const pem_pair b = make_pem_pair(dir, "b", key_type::rsa, {"b.test", {"b.test"}});
  config c;
  auto r = parse_with({"--tls-cert", a.cert_file, "--tls-key", a.key_file, "--tls-cert",
                       b.cert_file, "--tls-key", b.key_file, "--tls-min-version", "1.3",
                       "--tls-ticket-rotation", "10m", "--tls-max-handshakes", "32"},
                      c);
  REQUIRE_MESSAGE(r.ok, r.message);
  REQUIRE(c.tls.server != nullptr);
  CHECK(c.tls.server->certificates().size() == 2);
  CHECK(c.tls.server->settings().min_version == tls::tls_version::tls1_3);
  CHECK(c.tls.server->settings().ticket_lifetime_s == 1200);
  CHECK(c.tls.server->settings().ciphers == tls::default_cipher_list);
  CHECK(c.tls.server->settings().alpn_http1);
  CHECK(c.tls.ticket_rotation_ms == 600'000);
  CHECK(c.tls.max_handshakes == 32);

  config plain;
  REQUIRE(parse_with({"--mode", "tcp"}, plain).ok);
  CHECK(plain.tls.server == nullptr);
  CHECK_FALSE(plain.tls.enabled());

  config tcp;  // no ALPN in tcp mode: the bytes are not HTTP
  REQUIRE(parse_with({"--mode", "tcp", "--tls-cert", a.cert_file, "--tls-key", a.key_file}, tcp).ok);
  CHECK_FALSE(tcp.tls.server->settings().alpn_http1);
}

TEST_CASE("run_options.tls_errors_exit_naming_flag_and_file") {
  temp_dir dir;
  const pem_pair a = make_pem_pair(dir, "a", key_type::ecdsa, {"a.test", {"a.test"}});
  const pem_pair b = make_pem_pair(dir, "b", key_type::ecdsa, {"b.test", {"b.test"}});
  const std::string missing = (dir.path / "missing.pem").string();
  struct bad_case {
    std::vector<std::string> args;
    std::string message_start;
  };
  const bad_case cases[] = {
      {{"--tls-cert", a.cert_file}, "--tls-key: 1 --tls-cert but 0 --tls-key"},
      {{"--tls-key", a.key_file}, "--tls-cert: 0 --tls-cert but 1 --tls-key"},
      {{"--tls-cert", missing, "--tls-key", a.key_file},
       "--tls-cert: cannot read '" + missing + "': No such file or directory"},
      {{"--tls-cert", a.cert_file, "--tls-key", b.key_file},
       "--tls-key: '" + b.key_file + "' does not match the certificate in '" + a.cert_file + "'"},
      {{"--tls-cert", a.cert_file, "--tls-key", a.key_file, "--tls-min-version", "1.1"},
       "--tls-min-version: '1.1' is not one of 1.2, 1.3"},
      {{"--tls-cert", a.cert_file, "--tls-key", a.key_file, "--tls-ciphers", "NOPE-CIPHER"},
       "--tls-ciphers: 'NOPE-CIPHER' names no cipher suite"},
      {{"--tls-ticket-rotation", "500ms"}, "--tls-ticket-rotation: '500ms' is below 1s"},
      {{"--tls-max-handshakes", "0"}, "--tls-max-handshakes: '0' is not a whole number"},
  };
  for (const bad_case& bc : cases) {
    CAPTURE(bc.message_start);
    config c;
    const run_parse_result r = parse_with(bc.args, c);
    CHECK_FALSE(r.ok);
    CHECK(r.message.starts_with(bc.message_start));
  }
}
