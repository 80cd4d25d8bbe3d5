#include "tls/server_context.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "tls/parked_stream.h"
#include "tls/ticket_keys.h"

namespace wslb::tls {

namespace {

const server_context& owner_of(const SSL* ssl) {
  return *static_cast<const server_context*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
}

// SNI: switch the connection to the context of the certificate that names the host. The
// session-ticket callback stays the initial context's (OpenSSL keeps session_ctx), which is
// the same for all of them.
int on_server_name(SSL* ssl, int*, void*) {
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (name == nullptr) return SSL_TLSEXT_ERR_NOACK;
  SSL_CTX* wanted = owner_of(ssl).context_for(name);
  if (wanted != SSL_get_SSL_CTX(ssl)) SSL_set_SSL_CTX(ssl, wanted);
  return SSL_TLSEXT_ERR_OK;
}

// ALPN: "http/1.1" when the client offers it; otherwise no ALPN at all rather than a failed
// handshake (a client without ALPN, or one offering only h2, still gets HTTP/1.1).
int on_alpn(SSL*, const unsigned char** out, unsigned char* out_len, const unsigned char* in,
            unsigned int in_len, void*) {
  static const unsigned char http1[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, out_len, http1, sizeof http1, in, in_len) !=
      OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_NOACK;
  }
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

int on_ticket_key(SSL* ssl, unsigned char key_name[16], unsigned char iv[EVP_MAX_IV_LENGTH],
                  EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac, int enc) {
  const shm::tls_section* keys = owner_of(ssl).ticket_keys();
  if (keys == nullptr) return 0;  // no table: no tickets, full handshakes
  return ticket_key_callback(*keys, key_name, iv, cipher, mac, enc);
}

}  // namespace

std::shared_ptr<server_context> server_context::load(const server_settings& settings,
                                                     std::int64_t now_ms, std::string& error) {
  std::shared_ptr<server_context> out(new server_context());
  out->settings_ = settings;
  if (settings.certificates.empty()) {
    error = "--tls-cert: no certificate given";
    return nullptr;
  }
  for (const certificate_files& files : settings.certificates) {
    certificate cert;
    if (!load_certificate(files.cert_file, files.key_file, now_ms, cert, error)) return nullptr;
    if (!out->add(std::move(cert), error)) return nullptr;
  }
  return out;
}

bool server_context::add(certificate&& cert, std::string& error) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) {
    error = "--tls-cert: " + take_openssl_error();
    return false;
  }
  entries_.push_back(entry{ctx, std::move(cert)});
  entry& e = entries_.back();
  SSL_CTX_set_app_data(ctx, this);
  SSL_CTX_set_min_proto_version(
      ctx, settings_.min_version == tls_version::tls1_3 ? TLS1_3_VERSION : TLS1_2_VERSION);
  // Renegotiation off (a client-initiated one costs us a full handshake for nothing); no
  // compression (CRIME).
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  // Record buffers only while a record is in flight: an idle connection keeps none.
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  // No server-side cache: it would be per worker (a resumption would miss whichever worker
  // accepts it) and hold memory per session. Tickets, with keys in the table, resume anywhere.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_timeout(ctx, static_cast<long>(settings_.ticket_lifetime_s));
  SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, on_ticket_key);
  SSL_CTX_set_tlsext_servername_callback(ctx, on_server_name);
  if (settings_.alpn_http1) SSL_CTX_set_alpn_select_cb(ctx, on_alpn, nullptr);
  // The traffic secrets a connection needs to be parked (engine::park) once idle.
  watch_traffic_secrets(ctx);
  static const unsigned char session_id_context[] = "wslb";
  SSL_CTX_set_session_id_context(ctx, session_id_context, sizeof session_id_context - 1);
  if (SSL_CTX_set_cipher_list(ctx, settings_.ciphers.c_str()) != 1) {
    ERR_clear_error();
    error = "--tls-ciphers: '" + settings_.ciphers + "' names no cipher suite OpenSSL knows";
    return false;
  }
  if (SSL_CTX_use_certificate(ctx, e.cert.leaf.get()) != 1 ||
      SSL_CTX_use_PrivateKey(ctx, e.cert.key.get()) != 1) {
    error = "--tls-cert: '" + e.cert.info.cert_file + "': " + take_openssl_error();
    return false;
  }
  for (const x509_ptr& x : e.cert.chain) {
    if (SSL_CTX_add1_chain_cert(ctx, x.get()) != 1) {
      error = "--tls-cert: '" + e.cert.info.cert_file + "' chain: " + take_openssl_error();
      return false;
    }
  }
  return true;
}

std::string load_listener_tls(config& cfg, std::int64_t now_ms) {
  cfg.tls.server.reset();
  if (!cfg.tls.enabled()) return {};
  std::string error;
  cfg.tls.server = server_context::load(cfg.tls.settings, now_ms, error);
  return error;
}

server_context::~server_context() {
  for (entry& e : entries_) SSL_CTX_free(e.ctx);
}

SSL_CTX* server_context::context_for(std::string_view server_name) const {
  const std::string name(server_name);
  for (const entry& e : entries_) {
    if (X509_check_host(e.cert.leaf.get(), name.data(), name.size(), 0, nullptr) == 1) {
      return e.ctx;
    }
  }
  return default_context();
}

std::vector<certificate_info> server_context::certificates() const {
  std::vector<certificate_info> out;
  for (const entry& e : entries_) out.push_back(e.cert.info);
  return out;
}

}  // namespace wslb::tls
