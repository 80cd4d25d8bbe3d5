// One certificate and its private key, read from PEM files and checked the way an operator
// needs: the file is there and readable, holds a certificate (with its chain) and a key, the
// key matches, the certificate is valid now. Used by server_context (master at start and on
// reload, and the tests); knows nothing of SSL_CTX.
#pragma once

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace wslb::tls {

struct x509_free {
  void operator()(X509* x) const { X509_free(x); }
};
struct pkey_free {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using x509_ptr = std::unique_ptr<X509, x509_free>;
using pkey_ptr = std::unique_ptr<EVP_PKEY, pkey_free>;

// Takes the oldest error off OpenSSL's queue (and clears the rest), in words for a message.
std::string take_openssl_error();

// A certificate this close to expiry is flagged: a warning in the master's log, "RENEW SOON"
// in `status`.
inline constexpr std::int64_t expiry_warning_days = 14;

// What `status` and the logs say about a certificate.
struct certificate_info {
  std::string cert_file;
  std::string subject;        // RFC 2253: "CN=example.com,O=Example"
  std::string key_kind;       // "ECDSA prime256v1", "RSA 2048"
  std::int64_t not_after_ms = 0;  // unix ms it expires
  std::vector<std::string> dns_names;  // subjectAltName DNS entries, else the CN

  // Whole days until it expires at `now_ms` (negative once expired).
  std::int64_t days_left(std::int64_t now_ms) const;
};

struct certificate {
  x509_ptr leaf;
  std::vector<x509_ptr> chain;  // intermediates, in file order
  pkey_ptr key;
  certificate_info info;
};

// Reads `cert_file` (leaf first, then its chain) and `key_file` and checks them at `now_ms`.
// On failure returns false with `error` naming the flag and the file: "--tls-cert: cannot
// read '/x.pem': No such file or directory", "--tls-key: '/k.pem' does not match the
// certificate in '/c.pem'", "--tls-cert: '/c.pem' expired on 2026-01-01 00:00 UTC".
bool load_certificate(const std::string& cert_file, const std::string& key_file,
                      std::int64_t now_ms, certificate& out, std::string& error);

// "2026-01-01 00:00 UTC".
std::string format_utc(std::int64_t unix_ms);

}  // namespace wslb::tls
