#include "tls/record_protection.h"

#include <openssl/core_names.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include <cstring>

namespace wslb::tls {

namespace {

const char* digest_of(record_suite suite) {
  return suite == record_suite::aes_256_gcm_sha384 ? "SHA384" : "SHA256";
}

std::size_t key_length(record_suite suite) {
  return suite == record_suite::aes_128_gcm_sha256 ? 16 : 32;
}

// HKDF-Expand-Label(secret, label, "", out_len) (RFC 8446 7.1), by OpenSSL's TLS 1.3 KDF: the
// same code OpenSSL's own record layer derives its keys with.
bool expand_label(record_suite suite, const unsigned char* secret, const char* label,
                  unsigned char* out, std::size_t out_len) {
  // Fetched once per process: every loop derives through the same algorithm object.
  static EVP_KDF* kdf = EVP_KDF_fetch(nullptr, "TLS13-KDF", nullptr);
  if (kdf == nullptr) return false;
  EVP_KDF_CTX* kctx = EVP_KDF_CTX_new(kdf);
  if (kctx == nullptr) return false;
  int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
  static char prefix[] = "tls13 ";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST,
                                       const_cast<char*>(digest_of(suite)), 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<unsigned char*>(secret),
                                        secret_length(suite)),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PREFIX, prefix, sizeof prefix - 1),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_LABEL, const_cast<char*>(label),
                                        std::strlen(label)),
      OSSL_PARAM_construct_end(),
  };
  const bool ok = EVP_KDF_derive(kctx, out, out_len, params) == 1;
  EVP_KDF_CTX_free(kctx);
  return ok;
}

bool derive_key_and_iv(record_suite suite, traffic_keys& keys) {
  keys.seq = 0;
  return expand_label(suite, keys.secret, "key", keys.key, key_length(suite)) &&
         expand_label(suite, keys.secret, "iv", keys.iv, sizeof keys.iv);
}

void put_header(unsigned char* h, std::size_t body_len) {
  h[0] = application_data;  // every protected record says so (RFC 8446 5.2)
  h[1] = 0x03;
  h[2] = 0x03;
  h[3] = static_cast<unsigned char>(body_len >> 8);
  h[4] = static_cast<unsigned char>(body_len);
}

}  // namespace

record_suite suite_from_id(std::uint16_t id) {
  switch (id) {
    case 0x1301: return record_suite::aes_128_gcm_sha256;
    case 0x1302: return record_suite::aes_256_gcm_sha384;
    case 0x1303: return record_suite::chacha20_poly1305_sha256;
    default: return record_suite::unsupported;
  }
}

std::size_t secret_length(record_suite suite) {
  return suite == record_suite::aes_256_gcm_sha384 ? 48 : 32;
}

bool set_traffic_secret(record_suite suite, traffic_keys& keys, const unsigned char* secret) {
  std::memcpy(keys.secret, secret, secret_length(suite));
  return derive_key_and_iv(suite, keys);
}

bool update_traffic_secret(record_suite suite, traffic_keys& keys) {
  unsigned char next[max_secret_length];
  if (!expand_label(suite, keys.secret, "traffic upd", next, secret_length(suite))) return false;
  std::memcpy(keys.secret, next, secret_length(suite));
  return derive_key_and_iv(suite, keys);
}

record_cipher::record_cipher() : ctx_(EVP_CIPHER_CTX_new()) {}

record_cipher::~record_cipher() {
  EVP_CIPHER_CTX_free(ctx_);
  for (EVP_CIPHER* c : ciphers_) EVP_CIPHER_free(c);
}

const EVP_CIPHER* record_cipher::cipher_for(record_suite suite) {
  static const char* const names[] = {"AES-128-GCM", "AES-256-GCM", "ChaCha20-Poly1305"};
  if (suite == record_suite::unsupported) return nullptr;
  const auto i = static_cast<std::size_t>(suite) - 1;
  if (ciphers_[i] == nullptr) ciphers_[i] = EVP_CIPHER_fetch(nullptr, names[i], nullptr);
  return ciphers_[i];
}

// RFC 8446 5.3: the 64-bit sequence number, big-endian and left-padded to the iv's length,
// XORed with the iv.
void record_cipher::nonce_for(const traffic_keys& keys, unsigned char nonce[12]) const {
  std::memcpy(nonce, keys.iv, 12);
  for (int i = 0; i < 8; ++i) nonce[11 - i] ^= static_cast<unsigned char>(keys.seq >> (8 * i));
}

bool record_cipher::seal(record_suite suite, traffic_keys& keys, std::uint8_t inner_type,
                         const char* plain, std::size_t len, std::string& out) {
  const EVP_CIPHER* cipher = cipher_for(suite);
  if (ctx_ == nullptr || cipher == nullptr || len > max_record_plaintext) return false;
  unsigned char nonce[12];
  nonce_for(keys, nonce);
  const std::size_t body_len = len + 1 + record_tag_length;
  const std::size_t start = out.size();
  out.resize(start + record_header_length + body_len);
  auto* h = reinterpret_cast<unsigned char*>(out.data() + start);
  put_header(h, body_len);
  unsigned char* body = h + record_header_length;
  int n = 0, type_n = 0, final_n = 0;
  const bool ok =
      EVP_CipherInit_ex2(ctx_, cipher, keys.key, nonce, 1, nullptr) == 1 &&
      EVP_CipherUpdate(ctx_, nullptr, &n, h, record_header_length) == 1 &&
      EVP_CipherUpdate(ctx_, body, &n, reinterpret_cast<const unsigned char*>(plain),
                       static_cast<int>(len)) == 1 &&
      EVP_CipherUpdate(ctx_, body + n, &type_n, &inner_type, 1) == 1 &&
      EVP_CipherFinal_ex(ctx_, body + n + type_n, &final_n) == 1 &&
      EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_AEAD_GET_TAG, record_tag_length, body + len + 1) == 1;
  if (!ok) {
    out.resize(start);
    return false;
  }
  ++keys.seq;
  return true;
}

record_cipher::opened record_cipher::open(record_suite suite, traffic_keys& keys,
                                          const unsigned char* record, std::size_t len,
                                          char* plain, std::size_t& plain_len,
                                          std::uint8_t& inner_type) {
  const EVP_CIPHER* cipher = cipher_for(suite);
  if (ctx_ == nullptr || cipher == nullptr) return opened::bad_mac;
  const unsigned char* body = record + record_header_length;
  const std::size_t sealed_len = len - record_header_length - record_tag_length;
  // TLSInnerPlaintext is the content (at most 2^14), its type byte and zero padding; anything
  // longer is record_overflow (RFC 8446 5.4).
  if (sealed_len > max_record_plaintext + 1) return opened::overflow;
  unsigned char nonce[12];
  nonce_for(keys, nonce);
  auto* out = reinterpret_cast<unsigned char*>(plain);
  unsigned char last = 0;  // the final byte apart: `plain` need not hold 2^14 + 1
  int n = 0, last_n = 0, final_n = 0;
  const bool ok =
      EVP_CipherInit_ex2(ctx_, cipher, keys.key, nonce, 0, nullptr) == 1 &&
      EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_AEAD_SET_TAG, record_tag_length,
                          const_cast<unsigned char*>(body + sealed_len)) == 1 &&
      EVP_CipherUpdate(ctx_, nullptr, &n, record, record_header_length) == 1 &&
      EVP_CipherUpdate(ctx_, out, &n, body, static_cast<int>(sealed_len - 1)) == 1 &&
      EVP_CipherUpdate(ctx_, &last, &last_n, body + sealed_len - 1, 1) == 1 &&
      EVP_CipherFinal_ex(ctx_, out + n, &final_n) == 1;
  if (!ok) return opened::bad_mac;
  ++keys.seq;
  // The type is the last non-zero byte; the zeros after it are padding.
  if (last != 0) {
    inner_type = last;
    plain_len = sealed_len - 1;
    return opened::ok;
  }
  std::size_t i = sealed_len - 1;
  while (i > 0 && out[i - 1] == 0) --i;
  if (i == 0) return opened::no_type;
  inner_type = out[i - 1];
  plain_len = i - 1;
  return opened::ok;
}

}  // namespace wslb::tls
