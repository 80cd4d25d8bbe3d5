// A TLS 1.3 connection without its SSL object. OpenSSL's SSL costs about 14 KiB of heap for
// an established connection, whatever it is doing (the SSL structure alone is 7.5 KiB, then
// two cipher contexts, the session, the certificate settings, the peer's key share); once a
// TLS 1.3 connection is idle, all its record layer still needs is the cipher suite and, for
// each direction, the traffic secret and the record sequence number: 240 bytes of heap here.
//
// Its life: while the SSL object lives, the stream gathers that state as OpenSSL makes it.
// OpenSSL hands each application traffic secret to the keylog callback at the moment it
// switches to it (CLIENT_TRAFFIC_SECRET_0, SERVER_TRAFFIC_SECRET_0), and reports each record
// header it reads or writes to the message callback, so the stream counts the records sent
// under each secret: those counts are the sequence numbers. A KeyUpdate seen while the SSL
// lives makes the connection unparkable (OpenSSL does not log the next secrets). Then park()
// derives the traffic keys and the engine frees the SSL; from there on the stream reads and
// writes the connection's records itself (record_protection.h): application data both ways,
// close_notify both ways, a client's KeyUpdate (answered when it asks), and anything else
// refused with the alert RFC 8446 names, after which the connection is closed.
#pragma once

#include <openssl/ssl.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "tls/record_protection.h"

namespace wslb::tls {

enum class read_status {
  data,        // `len` bytes of plaintext were read
  need_input,  // everything fed was consumed (handshake output, if any, is in output())
  closed,      // the peer sent close_notify
  failed,      // a protocol error or garbage: drop the connection
};

struct read_result {
  read_status status;
  std::size_t len = 0;
};

class parked_stream {
 public:
  parked_stream() = default;
  ~parked_stream();
  parked_stream(const parked_stream&) = delete;
  parked_stream& operator=(const parked_stream&) = delete;

  // Points `ssl`'s message callback at this stream. The keylog callback is the context's
  // (watch_traffic_secrets); it finds the stream through the SSL's app data, set here too.
  void watch(SSL* ssl);
  // Undoes watch(): `ssl` lives on without a stream.
  static void unwatch(SSL* ssl);

  // True when `ssl` may be freed and the stream carry the connection on: TLS 1.3, handshake
  // over, both secrets seen, no KeyUpdate, nothing buffered or pending inside OpenSSL, no
  // close_notify either way, a suite this file knows. Then the traffic keys are derived.
  bool park(SSL* ssl);
  bool parked() const { return parked_; }
  // park() will never succeed on `ssl`: a KeyUpdate went by, or the handshake settled on
  // TLS 1.2 or a suite this file does not carry.
  bool hopeless(SSL* ssl) const;

  // Parked only. Reads the next record(s) from `input`/`left` (advanced past what was used;
  // a record cut short is copied aside until the rest comes) and returns the first
  // application data (up to max_record_plaintext bytes into `plain`), or need_input once
  // everything was used. Alerts and KeyUpdate answers go to `out`.
  read_result read(record_cipher& cipher, const char*& input, std::size_t& left, char* plain,
                   std::string& out);
  // Parked only. Seals `len` bytes as application data records into `out`; false after a
  // close_notify or a failure.
  bool write(record_cipher& cipher, const char* plain, std::size_t len, std::string& out);
  // Parked only. Seals close_notify into `out`, once.
  void close_notify(record_cipher& cipher, std::string& out);

  // For tests: the sequence numbers of the next record read and written.
  std::uint64_t read_seq_for_test() const { return read_.seq; }
  std::uint64_t write_seq_for_test() const { return write_.seq; }

 private:
  friend struct stream_callbacks;

  bool next_record(const char*& input, std::size_t& left, const unsigned char*& record,
                   std::size_t& len);
  read_result fail(record_cipher& cipher, std::uint8_t alert, std::string& out);
  bool seal(record_cipher& cipher, std::uint8_t type, const char* data, std::size_t len,
            std::string& out);
  void drop_partial();

  traffic_keys read_{};   // the client's application traffic (what we read)
  traffic_keys write_{};  // the server's (what we write)
  char* partial_ = nullptr;        // a record cut short between reads (parked only)
  std::uint16_t partial_len_ = 0;
  std::uint8_t secret_len_ = 0;    // the captured secrets' length: 32 or 48
  record_suite suite_ = record_suite::unsupported;
  bool read_secret_seen_ : 1 = false;
  bool write_secret_seen_ : 1 = false;
  bool key_update_seen_ : 1 = false;
  bool parked_ : 1 = false;
  bool sent_close_ : 1 = false;    // close_notify or a fatal alert went out: nothing more
  bool peer_closed_ : 1 = false;   // close_notify came in
  bool failed_ : 1 = false;
};

// Installs on `ctx` the keylog callback that hands parked_streams their traffic secrets
// (server_context does, for every certificate's context).
void watch_traffic_secrets(SSL_CTX* ctx);

}  // namespace wslb::tls
