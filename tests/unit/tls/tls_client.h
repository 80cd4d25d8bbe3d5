// Test support: an OpenSSL client in memory (two memory BIOs) talking to a server engine, and
// the pump that carries bytes between them, so handshakes run without sockets.
#pragma once

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <string>

#include <doctest/doctest.h>

#include "tls/engine.h"
#include "tls/server_context.h"

namespace wslb::testing {

struct tls_client {
  SSL_CTX* ctx = nullptr;
  SSL* ssl = nullptr;
  BIO* from_server = nullptr;  // what the server wrote, for the client to read
  BIO* to_server = nullptr;    // what the client wrote, for the server

  // A client trusting `ca_file` (verification on when given), sending `sni` (when not empty).
  explicit tls_client(const std::string& ca_file, const std::string& sni = "",
                      SSL_SESSION* resume = nullptr, int max_version = 0) {
    ctx = SSL_CTX_new(TLS_client_method());
    if (max_version != 0) SSL_CTX_set_max_proto_version(ctx, max_version);
    if (!ca_file.empty()) {
      REQUIRE(SSL_CTX_load_verify_locations(ctx, ca_file.c_str(), nullptr) == 1);
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    }
    static const unsigned char protos[] = {2, 'h', '2', 8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    SSL_CTX_set_alpn_protos(ctx, protos, sizeof protos);
    ssl = SSL_new(ctx);
    from_server = BIO_new(BIO_s_mem());
    to_server = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(from_server, -1);  // empty means "wait", not end of stream
    SSL_set_bio(ssl, from_server, to_server);
    SSL_set_connect_state(ssl);
    if (!sni.empty()) {
      SSL_set_tlsext_host_name(ssl, sni.c_str());
      if (!ca_file.empty()) SSL_set1_host(ssl, sni.c_str());
    }
    if (resume != nullptr) SSL_set_session(ssl, resume);
  }
  ~tls_client() {
    SSL_free(ssl);
    SSL_CTX_free(ctx);
  }

  std::string take_output() {
    std::string out;
    char buf[16384];
    int n = 0;
    while ((n = BIO_read(to_server, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
    return out;
  }
  void give_input(const std::string& bytes) {
    if (!bytes.empty()) BIO_write(from_server, bytes.data(), static_cast<int>(bytes.size()));
  }
  // Reads what plaintext the client has (and processes tickets, alerts).
  std::string read_plain() {
    std::string out;
    char buf[16384];
    std::size_t n = 0;
    while (SSL_read_ex(ssl, buf, sizeof buf, &n) == 1) out.append(buf, n);
    ERR_clear_error();
    return out;
  }
};

// What the server side saw during a pump.
struct server_view {
  std::string plain;
  bool closed = false;  // close_notify from the client
  bool failed = false;
};

// Feeds `bytes` (ciphertext from the client) to the engine and reads until it needs more.
inline void server_consume(tls::engine& e, tls::engine_io& io, const std::string& bytes,
                           server_view& view) {
  e.feed(io, bytes.data(), bytes.size());
  char plain[tls::max_record_plaintext];  // a parked engine reads whole records
  for (;;) {
    const tls::read_result r = e.read(plain, sizeof plain);
    if (r.status == tls::read_status::data) {
      view.plain.append(plain, r.len);
      continue;
    }
    if (r.status == tls::read_status::closed) view.closed = true;
    if (r.status == tls::read_status::failed) view.failed = true;
    return;
  }
}

// Runs the client's handshake against the engine until both are done (or one fails).
// Returns true when both finished.
inline bool handshake(tls_client& c, tls::engine& e, tls::engine_io& io, server_view& view) {
  for (int round = 0; round < 10; ++round) {
    const int r = SSL_do_handshake(c.ssl);
    const int client_error = r == 1 ? SSL_ERROR_NONE : SSL_get_error(c.ssl, r);
    server_consume(e, io, c.take_output(), view);
    c.give_input(io.output());
    io.output().clear();
    if (view.failed) return false;
    if (r == 1 && e.handshake_done()) {
      c.read_plain();  // TLS 1.3: takes the session tickets
      return true;
    }
    if (r != 1 && client_error != SSL_ERROR_WANT_READ) return false;
  }
  return false;
}

// The server end of one connection: an engine over its own engine_io, and what it saw.
struct server_side {
  tls::engine_io io;
  tls::engine e;
  server_view view;
  explicit server_side(const tls::server_context& server) {
    REQUIRE(e.open(server.default_context(), io));
  }
  void consume(const std::string& bytes) { server_consume(e, io, bytes, view); }
  bool handshake(tls_client& c) { return testing::handshake(c, e, io, view); }
};

}  // namespace wslb::testing
