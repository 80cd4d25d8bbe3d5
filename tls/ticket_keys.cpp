#include "tls/ticket_keys.h"

#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstring>
#include <iterator>

namespace wslb::tls {

namespace {

constexpr auto relaxed = std::memory_order_relaxed;

void store_key(shm::ticket_key& dst, const ticket_key_material& src) {
  std::uint64_t words[shm::ticket_key_bytes / 8];
  static_assert(sizeof words == sizeof src);
  std::memcpy(words, &src, sizeof words);
  for (std::size_t i = 0; i < std::size(words); ++i) dst.words[i].store(words[i], relaxed);
}

ticket_key_material load_key(const shm::ticket_key& src) {
  std::uint64_t words[shm::ticket_key_bytes / 8];
  for (std::size_t i = 0; i < std::size(words); ++i) words[i] = src.words[i].load(relaxed);
  ticket_key_material out;
  std::memcpy(&out, words, sizeof out);
  return out;
}

bool set_mac_key(EVP_MAC_CTX* mac, unsigned char* key) {
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key, 32),
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_end(),
  };
  return EVP_MAC_CTX_set_params(mac, params) == 1;
}

}  // namespace

bool rotate_ticket_keys(shm::tls_section& section, std::int64_t now_ms) {
  ticket_key_material fresh;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&fresh), sizeof fresh) != 1) return false;
  const ticket_key_set old = read_ticket_keys(section);
  const std::uint32_t seq = section.keys_seq.load(relaxed);
  section.keys_seq.store(seq + 1, relaxed);  // odd: readers retry
  std::atomic_thread_fence(std::memory_order_release);
  store_key(section.keys[0], fresh);
  if (old.count > 0) store_key(section.keys[1], old.keys[0]);
  section.key_count.store(old.count > 0 ? 2 : 1, relaxed);
  section.keys_rotated_ms.store(now_ms, relaxed);
  section.keys_seq.store(seq + 2, std::memory_order_release);
  OPENSSL_cleanse(&fresh, sizeof fresh);
  return true;
}

ticket_key_set read_ticket_keys(const shm::tls_section& section) {
  ticket_key_set out;
  for (int attempt = 0; attempt < 1000; ++attempt) {
    const std::uint32_t before = section.keys_seq.load(std::memory_order_acquire);
    if (before & 1u) continue;
    out.count = std::min<std::uint32_t>(section.key_count.load(relaxed), 2);
    for (std::uint32_t i = 0; i < out.count; ++i) out.keys[i] = load_key(section.keys[i]);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (section.keys_seq.load(relaxed) == before) return out;
  }
  return ticket_key_set{};
}

int ticket_key_callback(const shm::tls_section& section, unsigned char key_name[16],
                        unsigned char iv[EVP_MAX_IV_LENGTH], EVP_CIPHER_CTX* cipher,
                        EVP_MAC_CTX* mac, int enc) {
  ticket_key_set set = read_ticket_keys(section);
  int result = 0;
  if (enc == 1) {
    // No key yet (a table without a master): no ticket, the handshake goes on without one.
    if (set.count == 0) return 0;
    ticket_key_material& k = set.keys[0];
    if (RAND_bytes(iv, 16) != 1) return -1;
    std::memcpy(key_name, k.name, sizeof k.name);
    result = EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, k.aes_key, iv) == 1 &&
                     set_mac_key(mac, k.hmac_key)
                 ? 1
                 : -1;
  } else {
    for (std::uint32_t i = 0; i < set.count; ++i) {
      ticket_key_material& k = set.keys[i];
      if (std::memcmp(key_name, k.name, sizeof k.name) != 0) continue;
      const bool ok = set_mac_key(mac, k.hmac_key) &&
                      EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, k.aes_key, iv) == 1;
      result = !ok ? -1 : (i == 0 ? 1 : 2);
      break;
    }
  }
  OPENSSL_cleanse(&set, sizeof set);
  return result;
}

}  // namespace wslb::tls
