#include "tls/client_context.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "tls/certificate.h"

namespace wslb::tls {

namespace {

bool is_ip_address(const std::string& host) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

// Reads the PEM certificates of `path` into `store`; "" or what is wrong with the file.
std::string load_ca_file(X509_STORE* store, const std::string& path) {
  // fopen first: OpenSSL's own message for a missing file says neither the path nor errno.
  FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) return std::string("cannot read it: ") + std::strerror(errno);
  int count = 0;
  for (;;) {
    X509* x = PEM_read_X509(f, nullptr, nullptr, nullptr);
    if (x == nullptr) break;
    if (X509_STORE_add_cert(store, x) == 1) ++count;
    X509_free(x);
  }
  std::fclose(f);
  // The loop ends at the end of the file or at a block that is not a certificate.
  const unsigned long last = ERR_peek_last_error();
  ERR_clear_error();
  if (count == 0) return "it holds no PEM certificate";
  if (last != 0 && ERR_GET_REASON(last) != PEM_R_NO_START_LINE) {
    return "it holds something that is not a PEM certificate";
  }
  return {};
}

}  // namespace

std::shared_ptr<client_context> client_context::load(const std::string& ca_file, bool alpn_http1,
                                                     std::string& error) {
  std::shared_ptr<client_context> out(new client_context());
  out->ca_file_ = ca_file;
  out->ctx_ = SSL_CTX_new(TLS_client_method());
  if (out->ctx_ == nullptr) {
    error = take_openssl_error();
    return nullptr;
  }
  SSL_CTX* ctx = out->ctx_;
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  if (ca_file.empty()) {
    if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
      error = "cannot load the system's CA store: " + take_openssl_error();
      return nullptr;
    }
  } else if (std::string why = load_ca_file(SSL_CTX_get_cert_store(ctx), ca_file); !why.empty()) {
    error = "ca file '" + ca_file + "': " + why;
    return nullptr;
  }
  if (alpn_http1) {
    static const unsigned char http1[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    SSL_CTX_set_alpn_protos(ctx, http1, sizeof http1);
  }
  return out;
}

client_context::~client_context() { SSL_CTX_free(ctx_); }

std::string load_backend_tls(config& cfg, client_context_cache& cache) {
  for (backend_config& b : cfg.backends) {
    b.tls.context.reset();
    if (!b.tls.enabled) continue;
    auto& ctx = cache[b.tls.ca_file];
    if (!ctx) {
      std::string error;
      ctx = client_context::load(b.tls.ca_file, cfg.mode == proxy_mode::http, error);
      if (!ctx) {
        cache.erase(b.tls.ca_file);
        return "--backend " + b.where.to_string() + ": " + error;
      }
    }
    b.tls.context = ctx;
  }
  return {};
}

std::string load_backend_tls(config& cfg) {
  client_context_cache cache;
  return load_backend_tls(cfg, cache);
}

std::string load_backend_tls(const config& cfg, backend_config& b) {
  b.tls.context.reset();
  if (!b.tls.enabled) return {};
  for (const backend_config& other : cfg.backends) {
    if (other.tls.context && other.tls.ca_file == b.tls.ca_file) {
      b.tls.context = other.tls.context;
      return {};
    }
  }
  std::string error;
  b.tls.context = client_context::load(b.tls.ca_file, cfg.mode == proxy_mode::http, error);
  return b.tls.context ? std::string() : "--backend " + b.where.to_string() + ": " + error;
}

bool aim_at_backend(SSL* ssl, const std::string& host, const std::string& sni) {
  const std::string& name = sni.empty() ? host : sni;
  if (!sni.empty() || !is_ip_address(host)) {
    // RFC 6066: SNI carries host names only, never an address.
    if (SSL_set_tlsext_host_name(ssl, name.c_str()) != 1) return false;
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    return SSL_set1_host(ssl, name.c_str()) == 1;
  }
  return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host.c_str()) == 1;
}

std::string handshake_failure(SSL* ssl) {
  const long verify = SSL_get_verify_result(ssl);
  if (verify != X509_V_OK) {
    ERR_clear_error();
    return std::string("certificate verify failed: ") + X509_verify_cert_error_string(verify);
  }
  const unsigned long e = ERR_peek_last_error();
  ERR_clear_error();
  if (e == 0) return "TLS handshake failed";
  const char* reason = ERR_reason_error_string(e);
  return std::string("TLS handshake failed: ") + (reason != nullptr ? reason : "protocol error");
}

}  // namespace wslb::tls
