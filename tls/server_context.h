// The server side of TLS for one configuration: an SSL_CTX per certificate (the first is the
// default, the others are chosen by SNI), all with the same settings. Built by the master when
// it parses the configuration (start and reload), so a bad certificate stops `run` or refuses
// the reload before anything changes; forked workers use the master's copy and only point the
// session-ticket callback at the shared table.
//
// Settings: TLS 1.2 and 1.3 (or 1.3 only), renegotiation off, no server-side session cache
// (resumption is by ticket only, keys in the table), SSL_MODE_RELEASE_BUFFERS so an idle
// connection holds no record buffers, ALPN "http/1.1" in http mode.
#pragma once

#include <openssl/ssl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/config.h"
#include "shm/layout.h"
#include "tls/certificate.h"
#include "tls/server_settings.h"

namespace wslb::tls {

class server_context {
 public:
  // Loads and checks every certificate at `now_ms` and builds the contexts. On failure
  // returns null and `error` names the flag and the file.
  static std::shared_ptr<server_context> load(const server_settings& settings,
                                              std::int64_t now_ms, std::string& error);
  ~server_context();
  server_context(const server_context&) = delete;
  server_context& operator=(const server_context&) = delete;

  // Seal and open session tickets with the keys in `keys` (the table's tls section; a worker
  // after fork, or a test). Without it no tickets are issued.
  void use_ticket_keys(const shm::tls_section* keys) { ticket_keys_ = keys; }
  const shm::tls_section* ticket_keys() const { return ticket_keys_; }

  // The context new connections start with (the first certificate's).
  SSL_CTX* default_context() const { return entries_.front().ctx; }
  // The context serving `server_name` (SNI): the first certificate whose names match it
  // (wildcards as in RFC 6125), else the default.
  SSL_CTX* context_for(std::string_view server_name) const;

  std::vector<certificate_info> certificates() const;
  const server_settings& settings() const { return settings_; }

 private:
  struct entry {
    SSL_CTX* ctx = nullptr;
    certificate cert;
  };
  server_context() = default;
  bool add(certificate&& cert, std::string& error);

  server_settings settings_;
  std::vector<entry> entries_;
  const shm::tls_section* ticket_keys_ = nullptr;
};

// Loads cfg.tls.settings into cfg.tls.server (nothing when TLS is off): `wslb run` before the
// master starts (an error exits 2), a reload in its prepare step (an error refuses it). Returns
// "" or the error, naming the flag and the file.
std::string load_listener_tls(config& cfg, std::int64_t now_ms);

}  // namespace wslb::tls
