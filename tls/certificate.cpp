#include "tls/certificate.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>

namespace wslb::tls {

std::string take_openssl_error() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

namespace {

struct bio_free {
  void operator()(BIO* b) const { BIO_free(b); }
};
using bio_ptr = std::unique_ptr<BIO, bio_free>;

// Reads a whole file, or says why not in the operator's words.
bool read_file(const char* flag, const std::string& path, std::string& out, std::string& error) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    error = std::string(flag) + ": cannot read '" + path + "': " + std::strerror(errno);
    return false;
  }
  char buf[8192];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  const bool failed = std::ferror(f) != 0;
  const int err = errno;
  std::fclose(f);
  if (failed) {
    error = std::string(flag) + ": cannot read '" + path + "': " + std::strerror(err);
    return false;
  }
  return true;
}

bio_ptr memory_bio(const std::string& bytes) {
  return bio_ptr(BIO_new_mem_buf(bytes.data(), static_cast<int>(bytes.size())));
}

// A passphrase prompt would block a daemon on its terminal: an encrypted key is an error.
int no_passphrase(char*, int, int, void*) { return -1; }

std::int64_t asn1_to_unix_ms(const ASN1_TIME* t) {
  std::tm tm{};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return 0;
  return static_cast<std::int64_t>(timegm(&tm)) * 1000;
}

std::string subject_of(X509* x) {
  bio_ptr b(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(b.get(), X509_get_subject_name(x), 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  const long len = BIO_get_mem_data(b.get(), &data);
  return std::string(data, static_cast<std::size_t>(len));
}

std::string key_kind_of(EVP_PKEY* k) {
  switch (EVP_PKEY_get_base_id(k)) {
    case EVP_PKEY_RSA: return "RSA " + std::to_string(EVP_PKEY_get_bits(k));
    case EVP_PKEY_EC: {
      char group[64] = {};
      std::size_t len = 0;
      EVP_PKEY_get_group_name(k, group, sizeof group, &len);
      return std::string("ECDSA ") + group;
    }
    case EVP_PKEY_ED25519: return "Ed25519";
    default: return OBJ_nid2sn(EVP_PKEY_get_base_id(k));
  }
}

std::vector<std::string> dns_names_of(X509* x) {
  std::vector<std::string> names;
  auto* sans = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(x, NID_subject_alt_name, nullptr, nullptr));
  if (sans != nullptr) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      const GENERAL_NAME* n = sk_GENERAL_NAME_value(sans, i);
      if (n->type != GEN_DNS) continue;
      const ASN1_IA5STRING* s = n->d.dNSName;
      names.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                         static_cast<std::size_t>(ASN1_STRING_length(s)));
    }
    GENERAL_NAMES_free(sans);
  }
  if (names.empty()) {
    char cn[256] = {};
    if (X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof cn) > 0) {
      names.emplace_back(cn);
    }
  }
  return names;
}

}  // namespace

std::int64_t certificate_info::days_left(std::int64_t now_ms) const {
  const std::int64_t day = 86'400'000;
  const std::int64_t left = not_after_ms - now_ms;
  return left >= 0 ? left / day : -((-left + day - 1) / day);
}

std::string format_utc(std::int64_t unix_ms) {
  const std::time_t t = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M UTC", &tm);
  return buf;
}

bool load_certificate(const std::string& cert_file, const std::string& key_file,
                      std::int64_t now_ms, certificate& out, std::string& error) {
  std::string cert_pem, key_pem;
  if (!read_file("--tls-cert", cert_file, cert_pem, error)) return false;
  if (!read_file("--tls-key", key_file, key_pem, error)) return false;
  ERR_clear_error();
  {
    bio_ptr b = memory_bio(cert_pem);
    out.leaf.reset(PEM_read_bio_X509(b.get(), nullptr, no_passphrase, nullptr));
    if (!out.leaf) {
      error = "--tls-cert: '" + cert_file + "' holds no PEM certificate";
      return false;
    }
    while (X509* x = PEM_read_bio_X509(b.get(), nullptr, no_passphrase, nullptr)) {
      out.chain.emplace_back(x);
    }
  }
  {
    bio_ptr b = memory_bio(key_pem);
    out.key.reset(PEM_read_bio_PrivateKey(b.get(), nullptr, no_passphrase, nullptr));
    if (!out.key) {
      error = "--tls-key: '" + key_file + "' holds no PEM private key (or one with a passphrase)";
      return false;
    }
  }
  ERR_clear_error();  // the end of the chain leaves a "no start line" behind
  if (X509_check_private_key(out.leaf.get(), out.key.get()) != 1) {
    ERR_clear_error();
    error = "--tls-key: '" + key_file + "' does not match the certificate in '" + cert_file + "'";
    return false;
  }
  certificate_info& info = out.info;
  info.cert_file = cert_file;
  info.subject = subject_of(out.leaf.get());
  info.key_kind = key_kind_of(out.key.get());
  info.not_after_ms = asn1_to_unix_ms(X509_get0_notAfter(out.leaf.get()));
  info.dns_names = dns_names_of(out.leaf.get());
  const std::int64_t not_before_ms = asn1_to_unix_ms(X509_get0_notBefore(out.leaf.get()));
  if (info.not_after_ms <= now_ms) {
    error = "--tls-cert: '" + cert_file + "' expired on " + format_utc(info.not_after_ms);
    return false;
  }
  if (not_before_ms > now_ms) {
    error = "--tls-cert: '" + cert_file + "' is not valid before " + format_utc(not_before_ms);
    return false;
  }
  return true;
}

}  // namespace wslb::tls
