// Test support: keys and certificates made with OpenSSL in the test itself (never committed),
// written as PEM files into a fresh temporary directory that is removed afterwards.
#pragma once

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "tls/certificate.h"

namespace wslb::testing {

enum class key_type { ecdsa, rsa };

inline tls::pkey_ptr make_key(key_type type) {
  EVP_PKEY* k = type == key_type::ecdsa ? EVP_EC_gen("P-256") : EVP_RSA_gen(2048);
  REQUIRE(k != nullptr);
  return tls::pkey_ptr(k);
}

struct cert_spec {
  std::string common_name;
  std::vector<std::string> dns_names;
  long valid_from_s = -3600;       // relative to now
  long valid_until_s = 30 * 86400;
  bool is_ca = false;
};

// A certificate for `key`, signed by `issuer_key` under `issuer` (self-signed when null).
inline tls::x509_ptr make_cert(const cert_spec& spec, EVP_PKEY* key, X509* issuer = nullptr,
                               EVP_PKEY* issuer_key = nullptr) {
  static long serial = 1000;
  tls::x509_ptr x(X509_new());
  X509_set_version(x.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x.get()), ++serial);
  X509_gmtime_adj(X509_getm_notBefore(x.get()), spec.valid_from_s);
  X509_gmtime_adj(X509_getm_notAfter(x.get()), spec.valid_until_s);
  X509_set_pubkey(x.get(), key);
  X509_NAME* name = X509_get_subject_name(x.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(spec.common_name.c_str()), -1,
                             -1, 0);
  X509_set_issuer_name(x.get(), issuer != nullptr ? X509_get_subject_name(issuer) : name);
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, issuer != nullptr ? issuer : x.get(), x.get(), nullptr, nullptr, 0);
  auto add_ext = [&](int nid, const std::string& value) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, nid, value.c_str());
    REQUIRE(ext != nullptr);
    X509_add_ext(x.get(), ext, -1);
    X509_EXTENSION_free(ext);
  };
  add_ext(NID_basic_constraints, spec.is_ca ? "critical,CA:TRUE" : "CA:FALSE");
  if (!spec.dns_names.empty()) {
    std::string sans;
    for (const auto& n : spec.dns_names) sans += (sans.empty() ? "DNS:" : ",DNS:") + n;
    add_ext(NID_subject_alt_name, sans);
  }
  REQUIRE(X509_sign(x.get(), issuer_key != nullptr ? issuer_key : key, EVP_sha256()) > 0);
  return x;
}

// A temporary directory for PEM files, removed with everything in it.
struct temp_dir {
  std::filesystem::path path;
  temp_dir() {
    char tmpl[] = "/tmp/wslb-tls-test-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~temp_dir() { std::filesystem::remove_all(path); }

  std::string write_cert(const std::string& file, const std::vector<X509*>& certs) const {
    const std::string p = (path / file).string();
    std::FILE* f = std::fopen(p.c_str(), "w");
    REQUIRE(f != nullptr);
    for (X509* x : certs) PEM_write_X509(f, x);
    std::fclose(f);
    return p;
  }
  std::string write_key(const std::string& file, EVP_PKEY* key) const {
    const std::string p = (path / file).string();
    std::FILE* f = std::fopen(p.c_str(), "w");
    REQUIRE(f != nullptr);
    PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
    std::fclose(f);
    return p;
  }
};

// A certificate and key written to `dir` as NAME.pem and NAME.key, signed by a CA or
// self-signed.
struct pem_pair {
  std::string cert_file, key_file;
  tls::x509_ptr cert;
  tls::pkey_ptr key;
};
inline pem_pair make_pem_pair(const temp_dir& dir, const std::string& name, key_type type,
                              const cert_spec& spec, X509* ca = nullptr,
                              EVP_PKEY* ca_key = nullptr) {
  pem_pair p;
  p.key = make_key(type);
  p.cert = make_cert(spec, p.key.get(), ca, ca_key);
  p.cert_file = dir.write_cert(name + ".pem", {p.cert.get()});
  p.key_file = dir.write_key(name + ".key", p.key.get());
  return p;
}

}  // namespace wslb::testing
