// TLS 1.3 record protection (RFC 8446 section 5.2) with OpenSSL's own primitives: the traffic
// keys of one direction derived from its traffic secret by HKDF-Expand-Label (OpenSSL's
// "TLS13-KDF"), and one record sealed or opened with the suite's AEAD through EVP (nonce = iv
// XOR the record's sequence number, additional data = the record header). No cryptography is
// written here; this file only arranges the bytes around OpenSSL's calls.
//
// It serves a parked connection (parked_stream.h), whose SSL object has been freed: what
// remains of its TLS state is one traffic_keys per direction.
#pragma once

#include <openssl/evp.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace wslb::tls {

// The TLS 1.3 cipher suites a parked connection can carry on (TLS_AES_128_CCM_* cannot: it is
// off by default in OpenSSL and such a connection simply stays on its SSL object).
enum class record_suite : std::uint8_t {
  unsupported,
  aes_128_gcm_sha256,        // 0x1301
  aes_256_gcm_sha384,        // 0x1302
  chacha20_poly1305_sha256,  // 0x1303
};

// The suite named by its IANA number (SSL_CIPHER_get_protocol_id), or unsupported.
record_suite suite_from_id(std::uint16_t id);
// The length of the suite's traffic secrets (its hash's output): 32 or 48.
std::size_t secret_length(record_suite suite);

inline constexpr std::size_t max_secret_length = 48;
inline constexpr std::size_t record_header_length = 5;
inline constexpr std::size_t record_tag_length = 16;
// RFC 8446 5.1 and 5.2: a record's plaintext is at most 2^14 bytes, its ciphertext at most
// 2^14 + 256.
inline constexpr std::size_t max_record_plaintext = 16384;
inline constexpr std::size_t max_record_ciphertext = 16384 + 256;

// Record content types (RFC 8446 appendix B.1).
enum content_type : std::uint8_t {
  change_cipher_spec = 20,
  alert = 21,
  handshake = 22,
  application_data = 23,
};

// One direction's protection: the traffic secret (kept for a KeyUpdate), the key and iv
// derived from it, and the sequence number of the next record.
struct traffic_keys {
  unsigned char secret[max_secret_length];
  unsigned char key[32];
  unsigned char iv[12];
  std::uint64_t seq = 0;
};

// Takes `secret` (secret_length(suite) bytes) as the direction's traffic secret: derives its
// key and iv and starts the sequence at 0. False when OpenSSL failed.
bool set_traffic_secret(record_suite suite, traffic_keys& keys, const unsigned char* secret);

// A KeyUpdate (RFC 8446 7.2): the next traffic secret, HKDF-Expand-Label(secret, "traffic
// upd", "", Hash.length), its key and iv, sequence 0. False when OpenSSL failed.
bool update_traffic_secret(record_suite suite, traffic_keys& keys);

// The cipher context of one worker loop, shared by every parked connection of that loop (it
// is re-keyed for each record, so a connection keeps only its traffic_keys). Single-threaded.
class record_cipher {
 public:
  record_cipher();
  ~record_cipher();
  record_cipher(const record_cipher&) = delete;
  record_cipher& operator=(const record_cipher&) = delete;

  // Appends one protected record to `out`: the header, then `plain` (at most
  // max_record_plaintext bytes) and `inner_type` sealed, then the tag. Advances keys.seq.
  // False when OpenSSL failed (nothing usable was appended).
  bool seal(record_suite suite, traffic_keys& keys, std::uint8_t inner_type, const char* plain,
            std::size_t len, std::string& out);

  enum class opened {
    ok,
    bad_mac,     // the tag does not verify (or OpenSSL failed): bad_record_mac
    overflow,    // more than 2^14 bytes of content: record_overflow
    no_type,     // only zeros inside, no content type: unexpected_message
  };

  // Opens one whole record (`len` bytes, header included; the caller checked the header and
  // that len - 5 is within max_record_ciphertext and holds at least a tag and a type byte).
  // The content (padding and type removed) goes to `plain`, which holds max_record_plaintext
  // bytes; `inner_type` is the record's real type. Advances keys.seq when the tag verified.
  opened open(record_suite suite, traffic_keys& keys, const unsigned char* record,
              std::size_t len, char* plain, std::size_t& plain_len, std::uint8_t& inner_type);

 private:
  const EVP_CIPHER* cipher_for(record_suite suite);
  void nonce_for(const traffic_keys& keys, unsigned char nonce[12]) const;

  EVP_CIPHER_CTX* ctx_ = nullptr;
  EVP_CIPHER* ciphers_[3] = {nullptr, nullptr, nullptr};  // by suite, fetched on first use
};

}  // namespace wslb::tls
