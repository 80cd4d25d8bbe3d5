// Session-ticket keys kept in the shared table, so that a ticket sealed by one worker opens in
// any other, in later generations and after reloads. The master creates and rotates them; the
// workers read them on every ticket they seal or open (a seqlock copy of 160 bytes), so a
// rotation reaches every worker at once without a message.
#pragma once

#include <openssl/evp.h>
#include <openssl/ssl.h>

#include <cstdint>

#include "shm/layout.h"

namespace wslb::tls {

struct ticket_key_material {
  unsigned char name[16];
  unsigned char aes_key[32];
  unsigned char hmac_key[32];
};

// A consistent copy of the keys: [0] seals new tickets, [1] (when count is 2) still opens them.
struct ticket_key_set {
  std::uint32_t count = 0;
  ticket_key_material keys[2]{};
};

// Master only: makes a fresh random key the current one; the current one becomes the previous
// one (still accepted, its tickets renewed), and the one before that is forgotten. Returns
// false when the random generator failed (nothing changed then).
bool rotate_ticket_keys(shm::tls_section& section, std::int64_t now_ms);

// Any process: a consistent copy of the keys (retries while the master writes; count 0 when
// there are none yet or the copy kept tearing).
ticket_key_set read_ticket_keys(const shm::tls_section& section);

// The body of SSL_CTX_set_tlsext_ticket_key_evp_cb with the keys of `section`: sealing (enc 1)
// uses the current key; opening (enc 0) finds the key by the ticket's name, returns 2 (open,
// and issue a fresh ticket) for the previous key, 0 (full handshake) for an unknown one.
int ticket_key_callback(const shm::tls_section& section, unsigned char key_name[16],
                        unsigned char iv[EVP_MAX_IV_LENGTH], EVP_CIPHER_CTX* cipher,
                        EVP_MAC_CTX* mac, int enc);

}  // namespace wslb::tls
