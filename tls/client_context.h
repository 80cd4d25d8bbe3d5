// The client side of TLS towards backends (`--backend HOST:PORT,tls[,sni=NAME][,ca=FILE]`): one
// SSL_CTX per distinct CA file (the system store when none is given), built where the
// configuration is loaded (`wslb run` before the master starts, a reload's prepare step,
// `wslb backend add`), never per connection. Forked workers and the checker use the copy they
// inherit; a backend added at run time is built once by each process that adopts it.
//
// What is verified, on every connection and health check: the chain up to the CA, and that
// the certificate names the backend: `sni=NAME` if given, else HOST when it is a name (and
// that name goes out as SNI); an IP address without `sni=` is matched against the
// certificate's IP addresses. TLS 1.2 or later; ALPN "http/1.1" in http mode.
#pragma once

#include <openssl/ssl.h>

#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "common/config.h"

namespace wslb::tls {

class client_context {
 public:
  // Reads `ca_file` (empty: the system store) and builds the context. On failure returns null
  // and `error` says what is wrong with the file.
  static std::shared_ptr<client_context> load(const std::string& ca_file, bool alpn_http1,
                                              std::string& error);
  ~client_context();
  client_context(const client_context&) = delete;
  client_context& operator=(const client_context&) = delete;

  SSL_CTX* native() const { return ctx_; }
  const std::string& ca_file() const { return ca_file_; }

 private:
  client_context() = default;
  SSL_CTX* ctx_ = nullptr;
  std::string ca_file_;
};

// Contexts by CA file, so that backends sharing a CA share one context.
using client_context_cache = std::map<std::string, std::shared_ptr<client_context>>;

// Gives every TLS backend of `cfg` its context, reusing those in `cache` (filled as it goes).
// Returns "" or the error, naming --backend, the backend and the file.
std::string load_backend_tls(config& cfg, client_context_cache& cache);
std::string load_backend_tls(config& cfg);

// The same for one backend (a runtime addition), reusing a context of `cfg`'s backends with
// the same CA file when there is one.
std::string load_backend_tls(const config& cfg, backend_config& b);

// Points `ssl` (a fresh client SSL) at the backend `host` (as configured) with `sni` (empty:
// none given): SNI, and the name or IP address the certificate must carry. False when OpenSSL
// refused.
bool aim_at_backend(SSL* ssl, const std::string& host, const std::string& sni);

// Why a handshake with a backend failed, in words for the log and `status`: the certificate
// verification error ("certificate verify failed: unable to get local issuer certificate") or
// the TLS alert / protocol error.
std::string handshake_failure(SSL* ssl);

}  // namespace wslb::tls
