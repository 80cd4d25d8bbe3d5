#include "tls/record_protection.h"

#include <cctype>
#include <string>

#include <doctest/doctest.h>

using namespace wslb;

namespace {

std::string unhex(const char* text) {
  std::string out;
  int hi = -1;
  for (const char* p = text; *p != '\0'; ++p) {
    if (std::isxdigit(static_cast<unsigned char>(*p)) == 0) continue;
    const int v = std::isdigit(static_cast<unsigned char>(*p)) != 0 ? *p - '0'
                                                                   : (std::tolower(*p) - 'a' + 10);
    if (hi < 0) {
      hi = v;
    } else {
      out.push_back(static_cast<char>(hi << 4 | v));
      hi = -1;
    }
  }
  return out;
}

std::string bytes(const unsigned char* p, std::size_t n) {
  return std::string(reinterpret_cast<const char*>(p), n);
}

// RFC 8448 section 3 (a simple 1-RTT handshake, TLS_AES_128_GCM_SHA256): the application
// traffic secrets, the keys and ivs derived from them, and the records sent under them.
const char* const client_secret =
    "9e 40 64 6c e7 9a 7f 9d c0 5a f8 88 9b ce 65 52 87 5a fa 0b 06 df 00 87 f7 92 eb b7 c1 75 "
    "04 a5";
const char* const server_secret =
    "a1 1a f9 f0 55 31 f8 56 ad 47 11 6b 45 a9 50 32 82 04 b4 f4 4b fb 6b 3a 4b 4f 1f 3f cb 63 "
    "16 43";
// {client} send application_data record: the 50 bytes 00 01 .. 31, sequence 0.
const char* const client_data_record =
    "17 03 03 00 43 a2 3f 70 54 b6 2c 94 d0 af fa fe 82 28 ba 55 cb ef ac ea 42 f9 14 aa 66 bc ab "
    "3f 2b 98 19 a8 a5 b4 6b 39 5b d5 4a 9a 20 44 1e 2b 62 97 4e 1f 5a 62 92 a2 97 70 14 bd 1e 3d "
    "ea e6 3a ee bb 21 69 49 15 e4";
// {server} send application_data record: the same 50 bytes, sequence 1 (after the ticket).
const char* const server_data_record =
    "17 03 03 00 43 2e 93 7e 11 ef 4a c7 40 e5 38 ad 36 00 5f c4 a4 69 32 fc 32 25 d0 5f 82 aa 1b "
    "36 e3 0e fa f9 7d 90 e6 df fc 60 2d cb 50 1a 59 a8 fc c4 9c 4b f2 e5 f0 a2 1c 00 47 c2 ab f3 "
    "32 54 0d d0 32 e1 67 c2 95 5d";
// {client} send alert record: close_notify, sequence 1.
const char* const client_close_record =
    "17 03 03 00 13 c9 87 27 60 65 56 66 b7 4d 7f f1 15 3e fd 6d b6 d0 b0 e3";

std::string payload_0_to_31() {
  std::string p;
  for (int i = 0; i <= 0x31; ++i) p.push_back(static_cast<char>(i));
  return p;
}

tls::traffic_keys keys_from(const char* secret_hex) {
  tls::traffic_keys k;
  const std::string secret = unhex(secret_hex);
  REQUIRE(tls::set_traffic_secret(tls::record_suite::aes_128_gcm_sha256, k,
                                  reinterpret_cast<const unsigned char*>(secret.data())));
  return k;
}

struct opened_record {
  tls::record_cipher::opened result;
  std::string content;
  std::uint8_t type = 0;
};

opened_record open_record(tls::record_cipher& rc, tls::traffic_keys& k, const std::string& rec) {
  char plain[tls::max_record_plaintext];
  std::size_t len = 0;
  opened_record out;
  out.result = rc.open(tls::record_suite::aes_128_gcm_sha256, k,
                       reinterpret_cast<const unsigned char*>(rec.data()), rec.size(), plain, len,
                       out.type);
  if (out.result == tls::record_cipher::opened::ok) out.content.assign(plain, len);
  return out;
}

}  // namespace

TEST_CASE("record_protection.rfc8448_traffic_keys") {
  const tls::traffic_keys client = keys_from(client_secret);
  CHECK(bytes(client.key, 16) == unhex("17 42 2d da 59 6e d5 d9 ac d8 90 e3 c6 3f 50 51"));
  CHECK(bytes(client.iv, 12) == unhex("5b 78 92 3d ee 08 57 90 33 e5 23 d9"));
  CHECK(client.seq == 0);
  const tls::traffic_keys server = keys_from(server_secret);
  CHECK(bytes(server.key, 16) == unhex("9f 02 28 3b 6c 9c 07 ef c2 6b b9 f2 ac 92 e3 56"));
  CHECK(bytes(server.iv, 12) == unhex("cf 78 2b 88 dd 83 54 9a ad f1 e9 84"));
}

TEST_CASE("record_protection.rfc8448_records_seal_and_open") {
  tls::record_cipher rc;
  const std::string payload = payload_0_to_31();

  // Sealing the client's first record gives the document's bytes exactly.
  tls::traffic_keys sealer = keys_from(client_secret);
  std::string sealed;
  REQUIRE(rc.seal(tls::record_suite::aes_128_gcm_sha256, sealer, tls::application_data,
                  payload.data(), payload.size(), sealed));
  CHECK(sealed == unhex(client_data_record));
  CHECK(sealer.seq == 1);

  // Opening the client's records in order: its data, then its close_notify.
  tls::traffic_keys client = keys_from(client_secret);
  opened_record r = open_record(rc, client, unhex(client_data_record));
  REQUIRE(r.result == tls::record_cipher::opened::ok);
  CHECK(r.type == tls::application_data);
  CHECK(r.content == payload);
  r = open_record(rc, client, unhex(client_close_record));
  REQUIRE(r.result == tls::record_cipher::opened::ok);
  CHECK(r.type == tls::alert);
  CHECK(r.content == std::string("\x01\x00", 2));
  CHECK(client.seq == 2);

  // The server's data record went out second (sequence 1), after its NewSessionTicket.
  tls::traffic_keys server = keys_from(server_secret);
  server.seq = 1;
  r = open_record(rc, server, unhex(server_data_record));
  REQUIRE(r.result == tls::record_cipher::opened::ok);
  CHECK(r.content == payload);
}

TEST_CASE("record_protection.refuses_tampering_and_a_wrong_sequence") {
  tls::record_cipher rc;
  std::string rec = unhex(client_data_record);
  tls::traffic_keys k = keys_from(client_secret);

  std::string flipped = rec;
  flipped[20] = static_cast<char>(flipped[20] ^ 0x01);
  CHECK(open_record(rc, k, flipped).result == tls::record_cipher::opened::bad_mac);
  std::string header_changed = rec;
  header_changed[2] = 0x01;  // the header is the additional data: it is authenticated too
  CHECK(open_record(rc, k, header_changed).result == tls::record_cipher::opened::bad_mac);
  CHECK(k.seq == 0);  // a record that failed does not advance the sequence

  k.seq = 1;  // replayed or reordered: the nonce differs
  CHECK(open_record(rc, k, rec).result == tls::record_cipher::opened::bad_mac);
}

TEST_CASE("record_protection.every_suite_round_trips_with_padding_rules") {
  for (const auto suite : {tls::record_suite::aes_128_gcm_sha256,
                           tls::record_suite::aes_256_gcm_sha384,
                           tls::record_suite::chacha20_poly1305_sha256}) {
    CAPTURE(static_cast<int>(suite));
    unsigned char secret[tls::max_secret_length];
    for (std::size_t i = 0; i < sizeof secret; ++i) secret[i] = static_cast<unsigned char>(i * 7);
    tls::traffic_keys w, r;
    REQUIRE(tls::set_traffic_secret(suite, w, secret));
    REQUIRE(tls::set_traffic_secret(suite, r, secret));
    tls::record_cipher rc;
    const std::string big(tls::max_record_plaintext, 'x');
    std::string out;
    REQUIRE(rc.seal(suite, w, tls::application_data, big.data(), big.size(), out));
    CHECK(out.size() == 5 + big.size() + 1 + 16);
    char plain[tls::max_record_plaintext];
    std::size_t len = 0;
    std::uint8_t type = 0;
    REQUIRE(rc.open(suite, r, reinterpret_cast<const unsigned char*>(out.data()), out.size(),
                    plain, len, type) == tls::record_cipher::opened::ok);
    CHECK(len == big.size());
    CHECK(std::string(plain, len) == big);
    // One byte over 2^14 is refused, before and after sealing.
    CHECK_FALSE(rc.seal(suite, w, tls::application_data, big.data(), big.size() + 1, out));

    // A KeyUpdate moves both ends to the same next secret, and the old key no longer opens.
    REQUIRE(tls::update_traffic_secret(suite, w));
    REQUIRE(tls::update_traffic_secret(suite, r));
    out.clear();
    REQUIRE(rc.seal(suite, w, tls::handshake, "hi", 2, out));
    REQUIRE(rc.open(suite, r, reinterpret_cast<const unsigned char*>(out.data()), out.size(),
                    plain, len, type) == tls::record_cipher::opened::ok);
    CHECK(type == tls::handshake);
    CHECK(std::string(plain, len) == "hi");
  }
}

TEST_CASE("record_protection.rfc8446_traffic_update_label") {
  // The next secret is HKDF-Expand-Label(secret, "traffic upd", "", 32): the keys change, the
  // sequence restarts.
  tls::traffic_keys k = keys_from(client_secret);
  k.seq = 9;
  const std::string key_before = bytes(k.key, 16);
  REQUIRE(tls::update_traffic_secret(tls::record_suite::aes_128_gcm_sha256, k));
  CHECK(bytes(k.key, 16) != key_before);
  CHECK(k.seq == 0);
  CHECK(bytes(k.secret, 32) != unhex(client_secret));
}
