// What an operator chooses for TLS on the listener (the --tls-* flags), as plain data: part of
// the configuration every process carries. server_context turns it into OpenSSL contexts.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace wslb::tls {

enum class tls_version { tls1_2, tls1_3 };

// The TLS 1.2 cipher list used unless --tls-ciphers says otherwise: forward-secret AEAD
// suites only (Mozilla's "intermediate" list). TLS 1.3 suites are OpenSSL's defaults
// (AES-256-GCM, ChaCha20-Poly1305, AES-128-GCM).
inline constexpr const char* default_cipher_list =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

struct certificate_files {
  std::string cert_file;
  std::string key_file;
};

struct server_settings {
  std::vector<certificate_files> certificates;  // the first is the default; none: no TLS
  tls_version min_version = tls_version::tls1_2;
  std::string ciphers = default_cipher_list;    // TLS 1.2 suites
  bool alpn_http1 = true;                       // offer "http/1.1" (http mode)
  std::uint32_t ticket_lifetime_s = 7200;       // what tickets advertise
};

}  // namespace wslb::tls
