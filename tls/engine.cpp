#include "tls/engine.h"

#include <openssl/bio.h>
#include <openssl/err.h>

#include <algorithm>
#include <cstring>

namespace wslb::tls {

// The BIO behind every engine of a loop: reads come from the bytes lent by engine::feed,
// writes go to the loop's output string. It never blocks and never holds bytes of its own.
struct engine_bio {
  static engine_io& io(BIO* b) { return *static_cast<engine_io*>(BIO_get_data(b)); }

  static int write(BIO* b, const char* data, int len) {
    BIO_clear_retry_flags(b);
    io(b).output_.append(data, static_cast<std::size_t>(len));
    return len;
  }

  static int read(BIO* b, char* out, int len) {
    BIO_clear_retry_flags(b);
    engine_io& x = io(b);
    if (x.input_left_ == 0) {
      BIO_set_retry_read(b);  // "would block": OpenSSL reports SSL_ERROR_WANT_READ
      return -1;
    }
    const std::size_t n = std::min(x.input_left_, static_cast<std::size_t>(len));
    std::memcpy(out, x.input_, n);
    x.input_ += n;
    x.input_left_ -= n;
    return static_cast<int>(n);
  }

  static long ctrl(BIO* b, int cmd, long, void*) {
    switch (cmd) {
      case BIO_CTRL_FLUSH: return 1;
      case BIO_CTRL_PENDING: return static_cast<long>(io(b).input_left_);
      default: return 0;
    }
  }

  static int create(BIO* b) {
    BIO_set_init(b, 1);
    return 1;
  }

  static BIO_METHOD* method() {
    // Created once per process and never freed: BIOs of every loop share it.
    static BIO_METHOD* m = [] {
      BIO_METHOD* bm = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "wslb loop");
      BIO_meth_set_write(bm, write);
      BIO_meth_set_read(bm, read);
      BIO_meth_set_ctrl(bm, ctrl);
      BIO_meth_set_create(bm, create);
      return bm;
    }();
    return m;
  }
};

engine_io::engine_io() {
  bio_ = BIO_new(engine_bio::method());
  if (bio_ != nullptr) BIO_set_data(bio_, this);
  output_.reserve(80 * 1024);
}

engine_io::~engine_io() { BIO_free(bio_); }

engine::~engine() { reset(); }

bool engine::open(SSL_CTX* ctx, engine_io& io) {
  if (!open_ssl(ctx, io)) return false;
  SSL_set_accept_state(ssl_);
  if (SSL_get_max_proto_version(ssl_) == 0 || SSL_get_max_proto_version(ssl_) >= TLS1_3_VERSION) {
    stream_ = std::make_unique<parked_stream>();
    stream_->watch(ssl_);
  }
  return true;
}

bool engine::open_client(SSL_CTX* ctx, engine_io& io) {
  // Never parked: the backend side keeps its SSL object (parking is for idle clients).
  if (!open_ssl(ctx, io)) return false;
  SSL_set_connect_state(ssl_);
  return true;
}

bool engine::open_ssl(SSL_CTX* ctx, engine_io& io) {
  reset();
  if (io.bio_ == nullptr) return false;
  // What a previous connection left unread must not reach this one: a client's first read
  // (its ClientHello) comes before any feed().
  io.input_ = nullptr;
  io.input_left_ = 0;
  ssl_ = SSL_new(ctx);
  if (ssl_ == nullptr) return false;
  io_ = &io;
  // The SSL owns one reference to the shared BIO (one for reading and writing alike).
  BIO_up_ref(io.bio_);
  SSL_set_bio(ssl_, io.bio_, io.bio_);
  return true;
}

void engine::reset() {
  if (ssl_ != nullptr) SSL_free(ssl_);
  ssl_ = nullptr;
  stream_.reset();
}

bool engine::park() {
  if (!may_park()) return false;
  if (!stream_->park(ssl_)) {
    if (stream_->hopeless(ssl_)) {  // later calls then cost nothing
      parked_stream::unwatch(ssl_);  // OpenSSL's callbacks must not reach the freed stream
      stream_.reset();
    }
    return false;
  }
  SSL_free(ssl_);
  ssl_ = nullptr;
  return true;
}

void engine::feed(engine_io& io, const char* data, std::size_t len) {
  io.input_ = data;
  io.input_left_ = len;
}

read_result engine::read(char* plain, std::size_t cap) {
  if (parked()) {
    (void)cap;  // whole records: the caller's buffer holds max_record_plaintext
    return stream_->read(io_->cipher_, io_->input_, io_->input_left_, plain, io_->output_);
  }
  ERR_clear_error();
  std::size_t n = 0;
  const int r = SSL_read_ex(ssl_, plain, cap, &n);
  if (r == 1) return {read_status::data, n};
  switch (SSL_get_error(ssl_, r)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE: return {read_status::need_input};
    case SSL_ERROR_ZERO_RETURN: return {read_status::closed};
    default: return {read_status::failed};
  }
}

bool engine::write(const char* plain, std::size_t len) {
  if (len == 0) return true;
  if (parked()) return stream_->write(io_->cipher_, plain, len, io_->output_);
  ERR_clear_error();
  std::size_t n = 0;
  // Without SSL_MODE_ENABLE_PARTIAL_WRITE and with a BIO that takes everything, a success
  // means all of `len` was encrypted.
  return SSL_write_ex(ssl_, plain, len, &n) == 1 && n == len;
}

void engine::close_notify() {
  if (parked()) {
    stream_->close_notify(io_->cipher_, io_->output_);
    return;
  }
  if (ssl_ == nullptr || !SSL_is_init_finished(ssl_)) return;
  if (SSL_get_shutdown(ssl_) & SSL_SENT_SHUTDOWN) return;
  ERR_clear_error();
  SSL_shutdown(ssl_);
}

std::string_view engine::server_name() const {
  const char* n = ssl_ != nullptr ? SSL_get_servername(ssl_, TLSEXT_NAMETYPE_host_name) : nullptr;
  return n != nullptr ? n : "";
}

std::string_view engine::version() const {
  if (parked()) return "TLSv1.3";
  return ssl_ != nullptr ? SSL_get_version(ssl_) : "";
}

std::string_view engine::alpn() const {
  const unsigned char* p = nullptr;
  unsigned int len = 0;
  if (ssl_ != nullptr) SSL_get0_alpn_selected(ssl_, &p, &len);
  return p != nullptr ? std::string_view(reinterpret_cast<const char*>(p), len) : "";
}

std::string engine::last_error() {
  const unsigned long e = ERR_peek_last_error();
  if (e == 0) return "protocol error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

}  // namespace wslb::tls
