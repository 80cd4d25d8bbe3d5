// One TLS connection as a pure byte transformer, knowing nothing of sockets or libuv: feed it
// the ciphertext the peer sent and read plaintext out; write plaintext and collect the
// ciphertext to send; close with close_notify.
//
// Memory: a connection owns its SSL object and, for TLS 1.3, a parked_stream of 240
// bytes. Ciphertext never sits in a per-connection buffer: the engine_io (one per worker loop)
// lends each call the bytes just read, and collects what OpenSSL writes into one shared output
// buffer that the caller sends (or queues) at once. With SSL_MODE_RELEASE_BUFFERS an idle
// connection then holds no buffer at all. park() goes further for an idle TLS 1.3 connection:
// it frees the SSL object (about 14 KiB) and the parked_stream carries the connection on.
#pragma once

#include <openssl/ssl.h>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "tls/parked_stream.h"
#include "tls/record_protection.h"

namespace wslb::tls {

// The per-loop side of every engine: one BIO shared by all connections of a loop (reference
// counted by OpenSSL), the ciphertext being fed, and the ciphertext produced. Single-threaded.
class engine_io {
 public:
  engine_io();
  ~engine_io();
  engine_io(const engine_io&) = delete;
  engine_io& operator=(const engine_io&) = delete;

  // Ciphertext produced by the last calls; the caller sends it and then clears it.
  std::string& output() { return output_; }

 private:
  friend class engine;
  friend struct engine_bio;
  BIO* bio_ = nullptr;
  record_cipher cipher_;  // parked connections' records
  const char* input_ = nullptr;
  std::size_t input_left_ = 0;
  std::string output_;
};

class engine {
 public:
  engine() = default;
  ~engine();
  engine(const engine&) = delete;
  engine& operator=(const engine&) = delete;

  // Creates the server side of a connection over `io`. Returns false when OpenSSL cannot.
  bool open(SSL_CTX* ctx, engine_io& io);
  // Creates the client side (towards a backend); the caller aims it (SNI, the name to verify)
  // through native() before the first read, which puts the ClientHello into io.output().
  bool open_client(SSL_CTX* ctx, engine_io& io);
  bool is_open() const { return ssl_ != nullptr || parked(); }
  // Frees the SSL object or the parked stream (after a close, or to drop the connection).
  void reset();

  // Frees the SSL object of an established TLS 1.3 connection with nothing in flight inside
  // OpenSSL, and carries the connection on with the parked stream (parked_stream.h). False
  // (nothing changed) when it cannot be parked; a connection that never can be (TLS 1.2, a
  // KeyUpdate seen) also drops its stream then, so later calls cost nothing.
  bool park();
  bool parked() const { return ssl_ == nullptr && stream_ != nullptr; }
  // A park() could still succeed some time (a TLS 1.3 candidate that has its SSL object).
  bool may_park() const { return ssl_ != nullptr && stream_ != nullptr; }

  // Lends the engine the ciphertext `data` for the reads that follow; they must go on until
  // one returns need_input (or closed/failed), since the bytes are not copied.
  void feed(engine_io& io, const char* data, std::size_t len);
  // Advances the handshake or decrypts into `plain` (up to `cap` bytes; once parked, whole
  // records: `cap` is at least max_record_plaintext).
  read_result read(char* plain, std::size_t cap);
  // Encrypts `len` bytes into io.output(). False on failure (drop the connection).
  bool write(const char* plain, std::size_t len);
  // Queues close_notify into io.output(). Safe to call more than once.
  void close_notify();

  // Some bytes have been fed to the handshake (false right after open()).
  bool handshake_started() const {
    return parked() || (ssl_ != nullptr && !SSL_in_before(ssl_));
  }
  bool handshake_done() const {
    return parked() || (ssl_ != nullptr && SSL_is_init_finished(ssl_));
  }
  bool resumed() const { return ssl_ != nullptr && SSL_session_reused(ssl_) == 1; }
  // The SNI name the client sent, the negotiated version ("TLSv1.3") and ALPN protocol (the
  // name and protocol are gone once parked: they are read when the handshake ends).
  std::string_view server_name() const;
  std::string_view version() const;
  std::string_view alpn() const;
  SSL* native() const { return ssl_; }
  const parked_stream* stream_for_test() const { return stream_.get(); }

  // Why the last read failed (an OpenSSL error string), for a log line.
  static std::string last_error();

 private:
  // The SSL object over `io`, either side (open and open_client set which).
  bool open_ssl(SSL_CTX* ctx, engine_io& io);

  SSL* ssl_ = nullptr;
  std::unique_ptr<parked_stream> stream_;  // TLS 1.3 candidates and parked connections
  engine_io* io_ = nullptr;                // the loop's, for parked reads and writes
};

}  // namespace wslb::tls
