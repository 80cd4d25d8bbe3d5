#include "tls/parked_stream.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string_view>

namespace wslb::tls {

namespace {

// Alert descriptions (RFC 8446 6).
enum alert_description : std::uint8_t {
  close_notify_alert = 0,
  unexpected_message = 10,
  bad_record_mac = 20,
  record_overflow = 22,
  decode_error = 50,
  user_canceled = 90,
};

inline constexpr std::uint8_t key_update_message = 24;  // HandshakeType key_update
inline constexpr std::size_t partial_capacity = record_header_length + max_record_ciphertext;

std::size_t body_length(const unsigned char* header) {
  return (static_cast<std::size_t>(header[3]) << 8) | header[4];
}

}  // namespace

// OpenSSL's callbacks, with access to the stream they feed.
struct stream_callbacks {
  // The keylog line of a secret: "LABEL <client random, hex> <secret, hex>".
  static void on_keylog(const SSL* ssl, const char* line) {
    auto* s = static_cast<parked_stream*>(SSL_get_app_data(ssl));
    if (s == nullptr || s->parked_) return;
    const std::string_view text(line);
    const bool client = text.starts_with("CLIENT_TRAFFIC_SECRET_0 ");
    if (!client && !text.starts_with("SERVER_TRAFFIC_SECRET_0 ")) return;
    const std::size_t space = text.rfind(' ');
    unsigned char secret[max_secret_length];
    std::size_t n = 0;
    if (OPENSSL_hexstr2buf_ex(secret, sizeof secret, &n, line + space + 1, '\0') != 1 ||
        (n != 32 && n != 48)) {
      return;  // never parked without both secrets
    }
    // OpenSSL switches to the secret as it logs it: the records counted from here on are
    // the ones under it.
    traffic_keys& k = client ? s->read_ : s->write_;
    std::memcpy(k.secret, secret, n);
    k.seq = 0;
    s->secret_len_ = static_cast<std::uint8_t>(n);
    (client ? s->read_secret_seen_ : s->write_secret_seen_) = true;
  }

  // Every record header read or written, and every handshake message.
  static void on_message(int write_p, int, int content_type, const void* buf, std::size_t len,
                         SSL*, void* arg) {
    auto* s = static_cast<parked_stream*>(arg);
    if (content_type == SSL3_RT_HEADER) {
      if (write_p != 0) {
        if (s->write_secret_seen_) ++s->write_.seq;
      } else if (s->read_secret_seen_) {
        ++s->read_.seq;
      }
    } else if (content_type == SSL3_RT_HANDSHAKE && len > 0 &&
               static_cast<const unsigned char*>(buf)[0] == key_update_message) {
      s->key_update_seen_ = true;
    }
  }
};

void watch_traffic_secrets(SSL_CTX* ctx) {
  SSL_CTX_set_keylog_callback(ctx, stream_callbacks::on_keylog);
}

parked_stream::~parked_stream() { drop_partial(); }

void parked_stream::watch(SSL* ssl) {
  SSL_set_app_data(ssl, this);
  SSL_set_msg_callback(ssl, stream_callbacks::on_message);
  SSL_set_msg_callback_arg(ssl, this);
}

void parked_stream::unwatch(SSL* ssl) {
  SSL_set_msg_callback(ssl, nullptr);
  SSL_set_msg_callback_arg(ssl, nullptr);
  SSL_set_app_data(ssl, nullptr);
}

bool parked_stream::park(SSL* ssl) {
  if (parked_ || !read_secret_seen_ || !write_secret_seen_ || key_update_seen_) return false;
  if (SSL_version(ssl) != TLS1_3_VERSION || !SSL_is_init_finished(ssl)) return false;
  // Bytes OpenSSL holds (a record partly read, plaintext not yet taken), a KeyUpdate it
  // still owes, or a close under way: the SSL object knows something the stream would not.
  if (SSL_has_pending(ssl) != 0 || SSL_get_shutdown(ssl) != 0 ||
      SSL_get_key_update_type(ssl) != SSL_KEY_UPDATE_NONE) {
    return false;
  }
  const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl);
  if (cipher == nullptr) return false;
  const record_suite suite = suite_from_id(SSL_CIPHER_get_protocol_id(cipher));
  if (suite == record_suite::unsupported || secret_length(suite) != secret_len_) return false;
  traffic_keys read = read_, write = write_;
  if (!set_traffic_secret(suite, read, read_.secret) ||
      !set_traffic_secret(suite, write, write_.secret)) {
    return false;
  }
  read.seq = read_.seq;  // set_traffic_secret starts at 0; the SSL has used these already
  write.seq = write_.seq;
  read_ = read;
  write_ = write;
  suite_ = suite;
  parked_ = true;
  return true;
}

bool parked_stream::hopeless(SSL* ssl) const {
  if (key_update_seen_) return true;
  if (!SSL_is_init_finished(ssl)) return false;
  const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl);
  return SSL_version(ssl) != TLS1_3_VERSION || cipher == nullptr ||
         suite_from_id(SSL_CIPHER_get_protocol_id(cipher)) == record_suite::unsupported;
}

void parked_stream::drop_partial() {
  std::free(partial_);
  partial_ = nullptr;
  partial_len_ = 0;
}

bool parked_stream::seal(record_cipher& cipher, std::uint8_t type, const char* data,
                         std::size_t len, std::string& out) {
  return cipher.seal(suite_, write_, type, data, len, out);
}

read_result parked_stream::fail(record_cipher& cipher, std::uint8_t alert, std::string& out) {
  if (!sent_close_) {
    const char fatal[2] = {2, static_cast<char>(alert)};
    seal(cipher, content_type::alert, fatal, sizeof fatal, out);
    sent_close_ = true;
  }
  failed_ = true;
  drop_partial();
  return {read_status::failed};
}

// The next whole record: straight from the input when it is all there, else through the
// partial buffer (allocated only while a record is cut short). False: more input is needed,
// or the header is bad (failed_ is not set here: the caller checks the header).
bool parked_stream::next_record(const char*& input, std::size_t& left,
                                const unsigned char*& record, std::size_t& len) {
  const auto* in = reinterpret_cast<const unsigned char*>(input);
  if (partial_len_ == 0 && left >= record_header_length) {
    const std::size_t whole = record_header_length + body_length(in);
    if (whole > partial_capacity || left >= whole) {  // too long: the caller refuses it
      record = in;
      len = std::min(whole, left);
      input += len;
      left -= len;
      return true;
    }
  }
  if (left == 0) return false;
  if (partial_ == nullptr) {
    partial_ = static_cast<char*>(std::malloc(partial_capacity));
    if (partial_ == nullptr) return false;
  }
  auto* p = reinterpret_cast<unsigned char*>(partial_);
  auto take = [&](std::size_t upto) {
    const std::size_t n = std::min(upto - partial_len_, left);
    std::memcpy(p + partial_len_, input, n);
    partial_len_ = static_cast<std::uint16_t>(partial_len_ + n);
    input += n;
    left -= n;
  };
  if (partial_len_ < record_header_length) take(record_header_length);
  if (partial_len_ < record_header_length) return false;
  const std::size_t whole = record_header_length + body_length(p);
  if (whole > partial_capacity) {
    record = p;
    len = partial_len_;
    return true;  // the caller refuses it by its header
  }
  take(whole);
  if (partial_len_ < whole) return false;
  record = p;
  len = whole;
  partial_len_ = 0;  // the buffer is freed once the record is handled
  return true;
}

read_result parked_stream::read(record_cipher& cipher, const char*& input, std::size_t& left,
                                char* plain, std::string& out) {
  if (failed_) return {read_status::failed};
  if (peer_closed_) return {read_status::closed};
  for (;;) {
    const unsigned char* record = nullptr;
    std::size_t len = 0;
    if (!next_record(input, left, record, len)) return {read_status::need_input};
    const bool from_partial = record == reinterpret_cast<const unsigned char*>(partial_);
    const std::size_t body = body_length(record);
    // After the handshake every record is protected application_data with version 0x0303.
    if (record[0] != content_type::application_data || record[1] != 0x03 || record[2] != 0x03) {
      return fail(cipher, unexpected_message, out);
    }
    if (body > max_record_ciphertext) return fail(cipher, record_overflow, out);
    if (body < record_tag_length + 1) return fail(cipher, decode_error, out);
    std::size_t plain_len = 0;
    std::uint8_t type = 0;
    const record_cipher::opened r =
        cipher.open(suite_, read_, record, len, plain, plain_len, type);
    if (from_partial) drop_partial();
    switch (r) {
      case record_cipher::opened::ok: break;
      case record_cipher::opened::bad_mac: return fail(cipher, bad_record_mac, out);
      case record_cipher::opened::overflow: return fail(cipher, record_overflow, out);
      case record_cipher::opened::no_type: return fail(cipher, unexpected_message, out);
    }
    const auto* content = reinterpret_cast<const unsigned char*>(plain);
    switch (type) {
      case content_type::application_data:
        if (plain_len == 0) continue;  // allowed, and carries nothing
        return {read_status::data, plain_len};
      case content_type::alert:
        if (plain_len != 2) return fail(cipher, decode_error, out);
        if (content[1] == close_notify_alert) {
          peer_closed_ = true;
          return {read_status::closed};
        }
        if (content[1] == user_canceled) continue;  // a close_notify follows it
        failed_ = true;  // the peer's error alert ends the connection; nothing to answer
        return {read_status::failed};
      case content_type::handshake:
        // The only handshake message a client may send now is a whole KeyUpdate in a record
        // of its own (RFC 8446 5.1: it must end its record, as it changes the key).
        if (plain_len != 5 || content[0] != key_update_message || content[1] != 0 ||
            content[2] != 0 || content[3] != 1 || content[4] > 1) {
          return fail(cipher, unexpected_message, out);
        }
        if (!update_traffic_secret(suite_, read_)) return fail(cipher, decode_error, out);
        if (content[4] == 1 && !sent_close_) {
          // update_requested: our own KeyUpdate (not requesting one) under the old key,
          // then our records go under the next one (RFC 8446 4.6.3).
          static const char answer[5] = {key_update_message, 0, 0, 1, 0};
          if (!seal(cipher, content_type::handshake, answer, sizeof answer, out) ||
              !update_traffic_secret(suite_, write_)) {
            return fail(cipher, decode_error, out);
          }
        }
        continue;
      default:
        return fail(cipher, unexpected_message, out);
    }
  }
}

bool parked_stream::write(record_cipher& cipher, const char* plain, std::size_t len,
                          std::string& out) {
  if (sent_close_ || failed_) return false;
  while (len > 0) {
    const std::size_t n = std::min(len, max_record_plaintext);
    if (!seal(cipher, content_type::application_data, plain, n, out)) return false;
    plain += n;
    len -= n;
  }
  return true;
}

void parked_stream::close_notify(record_cipher& cipher, std::string& out) {
  if (sent_close_ || failed_) return;
  const char warning[2] = {1, static_cast<char>(close_notify_alert)};
  seal(cipher, content_type::alert, warning, sizeof warning, out);
  sent_close_ = true;
}

}  // namespace wslb::tls
