#include "checker/probe.h"

#include <string_view>
#include <utility>

#include "protocol/http_response.h"
#include "protocol/websocket.h"
#include "tls/client_context.h"

namespace wslb::checker {

namespace {
// A status line or an upgrade response head longer than this is not a health answer.
constexpr std::size_t max_head_bytes = 16 * 1024;
// After our close frame, frames the server still sends are skipped up to this much.
constexpr std::size_t max_tail_bytes = 64 * 1024;
}  // namespace

std::string connect_error_text(int uv_status) {
  switch (uv_status) {
    case UV_ECONNREFUSED: return "connect refused";
    case UV_ETIMEDOUT: return "connect timed out";
    case UV_EHOSTUNREACH: return "host unreachable";
    case UV_ENETUNREACH: return "network unreachable";
    case UV_ECONNRESET: return "connect reset";
    default: return std::string("connect failed: ") + uv_strerror(uv_status);
  }
}

class probe {
 public:
  probe(uv_loop_t* loop, const probe_target& target, probe_done done)
      : loop_(loop), target_(target), done_(std::move(done)) {
    tcp_.data = this;
    timer_.data = this;
    connect_req_.data = this;
    write_req_.data = this;
    close_write_req_.data = this;
  }

  void begin() {
    uv_timer_init(loop_, &timer_);
    ++handles_open_;
    if (!target_.tls_error.empty()) {
      start_error_ = target_.tls_error;
      uv_timer_start(&timer_, on_timer, 0, 0);
      return;
    }
    int rc = uv_tcp_init(loop_, &tcp_);
    if (rc == 0) {
      ++handles_open_;
      tcp_open_ = true;
      rc = uv_tcp_connect(&connect_req_, &tcp_, reinterpret_cast<const sockaddr*>(&target_.addr),
                          on_connect);
    }
    if (rc != 0) {
      // Reported from the loop, never from inside start_probe: the caller may not be ready
      // for its callback yet (libuv's own rule for our callbacks too).
      start_error_ = connect_error_text(rc);
      uv_timer_start(&timer_, on_timer, 0, 0);
      return;
    }
    uv_timer_start(&timer_, on_timer, target_.timeout_ms, 0);
  }

  void cancel() {
    reported_ = true;
    close_all();
  }

 private:
  enum class phase { connecting, tls_handshake, awaiting_response, closing };

  static probe* self(void* data) { return static_cast<probe*>(data); }

  static void on_timer(uv_timer_t* t) {
    probe* p = self(t->data);
    if (!p->start_error_.empty()) {
      p->report(probe_status::failed, p->start_error_);
    } else if (p->phase_ == phase::connecting) {
      p->report(probe_status::timed_out,
                "timeout after " + std::to_string(p->target_.timeout_ms) + " ms");
    } else if (p->phase_ == phase::tls_handshake) {
      p->report(probe_status::timed_out, "timeout after " + std::to_string(p->target_.timeout_ms) +
                                             " ms (connected, in the TLS handshake)");
    } else if (p->phase_ == phase::awaiting_response) {
      p->report(probe_status::timed_out, "timeout after " + std::to_string(p->target_.timeout_ms) +
                                             " ms (connected, no response)");
    }
    // In the closing phase the result is already out; the server just never finished closing.
    p->close_all();
  }

  static void on_connect(uv_connect_t* req, int status) {
    probe* p = self(req->data);
    if (status == UV_ECANCELED || p->closing_) return;
    if (status < 0) {
      p->report(probe_status::failed, connect_error_text(status));
      p->close_all();
      return;
    }
    if (p->target_.tls_ctx != nullptr) {
      p->start_tls();
      return;
    }
    if (p->target_.kind == probe_kind::tcp) {
      p->report(probe_status::ok, {});
      p->close_all();
      return;
    }
    p->send_request();
  }

  // The check proper, once connected (and past the TLS handshake): the request, then the
  // answer is read.
  void send_request() {
    phase_ = phase::awaiting_response;
    build_request();
    int rc = 0;
    if (target_.tls_ctx != nullptr) {
      rc = send_encrypted(request_.data(), request_.size());
    } else {
      uv_buf_t buf = uv_buf_init(request_.data(), static_cast<unsigned>(request_.size()));
      rc = uv_write(&write_req_, reinterpret_cast<uv_stream_t*>(&tcp_), &buf, 1, on_write);
      if (rc == 0) rc = uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), on_alloc, on_read);
    }
    if (rc != 0) {
      report(probe_status::failed, std::string("send failed: ") + uv_strerror(rc));
      close_all();
    }
  }

  // ---- TLS towards the backend ----------------------------------------------------------

  // One write of ciphertext, copied: the engine's output buffer is the loop's.
  struct tls_write {
    uv_write_t req;
    probe* owner;
    std::string bytes;
  };

  static void on_tls_write(uv_write_t* req, int status) {
    auto* w = static_cast<tls_write*>(req->data);
    probe* p = w->owner;
    delete w;
    if (status == UV_ECANCELED || p->closing_ || status >= 0) return;
    p->report(probe_status::failed, std::string("send failed: ") + uv_strerror(status));
    p->close_all();
  }

  // Sends what the engine produced. 0 or a libuv error.
  int flush_tls() {
    std::string& out = target_.tls_io->output();
    if (out.empty()) return 0;
    auto* w = new tls_write{{}, this, std::move(out)};
    out.clear();
    w->req.data = w;
    uv_buf_t buf = uv_buf_init(w->bytes.data(), static_cast<unsigned>(w->bytes.size()));
    const int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&tcp_), &buf, 1, on_tls_write);
    if (rc != 0) delete w;
    return rc;
  }

  int send_encrypted(const char* data, std::size_t len) {
    if (!tls_.write(data, len)) {
      target_.tls_io->output().clear();
      return UV_EPROTO;
    }
    return flush_tls();
  }

  void start_tls() {
    phase_ = phase::tls_handshake;
    if (!tls_.open_client(target_.tls_ctx, *target_.tls_io) ||
        !tls::aim_at_backend(tls_.native(), target_.tls_host, target_.tls_sni)) {
      return fail("cannot start TLS");
    }
    if (target_.kind != probe_kind::tcp) {
      static const unsigned char http1[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
      SSL_set_alpn_protos(tls_.native(), http1, sizeof http1);
    }
    tls_.read(plain_, sizeof plain_);  // nothing to read yet: writes the ClientHello
    int rc = flush_tls();
    if (rc == 0) rc = uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), on_alloc, on_read);
    if (rc != 0) return fail(std::string("send failed: ") + uv_strerror(rc));
  }

  // Ciphertext from the backend: the handshake, then plaintext for the check.
  void on_tls_bytes(std::string_view bytes) {
    target_.tls_io->output().clear();
    tls_.feed(*target_.tls_io, bytes.data(), bytes.size());
    for (;;) {
      const tls::read_result r = tls_.read(plain_, sizeof plain_);
      if (r.status == tls::read_status::failed) {
        target_.tls_io->output().clear();
        if (phase_ == phase::tls_handshake) return fail(tls::handshake_failure(tls_.native()));
        if (phase_ == phase::awaiting_response) return fail("TLS error");
        return close_all();
      }
      if (flush_tls() != 0) return fail("send failed");
      if (phase_ == phase::tls_handshake && tls_.handshake_done()) {
        if (target_.kind == probe_kind::tcp) {
          report(probe_status::ok, {});
          return close_all();
        }
        send_request();
        if (closing_) return;
      }
      if (r.status == tls::read_status::data) {
        const std::string_view plain(plain_, r.len);
        if (phase_ == phase::awaiting_response) {
          on_response_bytes(plain);
        } else if (phase_ == phase::closing) {
          on_tail_bytes(plain);
        }
        if (closing_) return;
        continue;
      }
      if (r.status == tls::read_status::closed) {
        if (phase_ == phase::awaiting_response) return fail("closed before response");
        return close_all();
      }
      return;  // need more
    }
  }

  static void on_write(uv_write_t* req, int status) {
    probe* p = self(req->data);
    if (status == UV_ECANCELED || p->closing_ || status >= 0) return;
    if (p->phase_ == phase::awaiting_response) {
      p->report(probe_status::failed, std::string("send failed: ") + uv_strerror(status));
    }
    p->close_all();
  }

  static void on_alloc(uv_handle_t* h, std::size_t, uv_buf_t* buf) {
    probe* p = self(h->data);
    *buf = uv_buf_init(p->read_buf_, sizeof p->read_buf_);
  }

  static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
    probe* p = self(s->data);
    if (p->closing_) return;
    if (nread < 0) {
      if (p->phase_ == phase::tls_handshake) {
        p->report(probe_status::failed, nread == UV_EOF
                                            ? std::string("closed during the TLS handshake")
                                            : std::string("TLS handshake: ") +
                                                  uv_strerror(static_cast<int>(nread)));
      }
      if (p->phase_ == phase::awaiting_response) {
        p->report(probe_status::failed,
                  nread == UV_EOF ? std::string("closed before response")
                                  : std::string("read failed: ") +
                                        uv_strerror(static_cast<int>(nread)));
      }
      p->close_all();
      return;
    }
    const std::string_view bytes(buf->base, static_cast<std::size_t>(nread));
    if (p->target_.tls_ctx != nullptr) {
      p->on_tls_bytes(bytes);
    } else if (p->phase_ == phase::awaiting_response) {
      p->on_response_bytes(bytes);
    } else if (p->phase_ == phase::closing) {
      p->on_tail_bytes(bytes);
    }
  }

  static void on_close(uv_handle_t* h) {
    probe* p = self(h->data);
    if (--p->handles_open_ == 0) delete p;
  }

  void build_request() {
    request_ = "GET " + target_.path + " HTTP/1.1\r\nHost: " + target_.host +
               "\r\nUser-Agent: wslb-checker\r\n";
    if (target_.kind == probe_kind::websocket) {
      key_ = protocol::make_websocket_key();
      request_ += "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key_ +
                  "\r\nSec-WebSocket-Version: 13\r\n\r\n";
    } else {
      request_ += "Accept: */*\r\nConnection: close\r\n\r\n";
    }
  }

  void on_response_bytes(std::string_view bytes) {
    const std::size_t before = head_.size();
    head_.append(bytes.substr(0, max_head_bytes + 1 - std::min(head_.size(), max_head_bytes)));
    const protocol::sniff_result sniffed =
        sniffer_.feed(head_.data() + before, head_.size() - before);
    if (sniffed.status == protocol::sniff_status::invalid) return fail("bad HTTP status line");
    const int status = sniffer_.status_code();
    if (status == 0) return;  // wait for the rest of the status line
    if (target_.kind == probe_kind::http) {
      if (status >= 200 && status < 400) {
        report(probe_status::ok, {});
        close_all();
        return;
      }
      return fail("HTTP " + std::to_string(status));
    }
    if (status != 101) return fail("no 101 for upgrade (HTTP " + std::to_string(status) + ")");
    if (sniffed.status != protocol::sniff_status::complete) return;
    const std::size_t end = before + sniffed.head_bytes_in_feed;
    const auto accept =
        protocol::response_header(std::string_view(head_).substr(0, end), "Sec-WebSocket-Accept");
    if (!accept) return fail("bad Sec-WebSocket-Accept (missing)");
    if (*accept != protocol::websocket_accept(key_)) return fail("bad Sec-WebSocket-Accept");
    report(probe_status::ok, {});
    // The check has passed; now leave as a client should: a masked close frame 1000, then wait
    // for the server's close (or its FIN) so it does not log an abrupt reset.
    phase_ = phase::closing;
    tail_.assign(head_, end, std::string::npos);
    close_frame_ = protocol::make_close_frame(protocol::close_normal, /*masked=*/true);
    char* frame = reinterpret_cast<char*>(close_frame_.bytes.data());
    if (target_.tls_ctx != nullptr) {
      if (send_encrypted(frame, close_frame_.size) != 0) return close_all();
    } else {
      uv_buf_t buf = uv_buf_init(frame, static_cast<unsigned>(close_frame_.size));
      if (uv_write(&close_write_req_, reinterpret_cast<uv_stream_t*>(&tcp_), &buf, 1, on_write) !=
          0) {
        close_all();
        return;
      }
    }
    on_tail_bytes({});
  }

  // Frames after the 101: skipped until the server's close frame, which ends the exchange.
  void on_tail_bytes(std::string_view bytes) {
    tail_.append(bytes);
    std::size_t at = 0;
    for (;;) {
      protocol::frame_header h;
      const auto* data = reinterpret_cast<const std::uint8_t*>(tail_.data()) + at;
      if (!protocol::decode_frame_header(data, tail_.size() - at, h)) break;
      if (h.op == protocol::opcode::close) return close_all();
      if (h.payload_len > tail_.size() - at - h.header_len) break;
      at += h.header_len + static_cast<std::size_t>(h.payload_len);
    }
    tail_.erase(0, at);
    if (tail_.size() > max_tail_bytes) close_all();
  }

  void fail(std::string error) {
    report(probe_status::failed, std::move(error));
    close_all();
  }

  void report(probe_status status, std::string error) {
    if (reported_) return;
    reported_ = true;
    probe_done done = std::move(done_);
    done(probe_outcome{status, std::move(error)});
  }

  void close_all() {
    if (closing_) return;
    closing_ = true;
    reported_ = true;  // nothing more to say once the socket is gone
    tls_.reset();
    uv_close(reinterpret_cast<uv_handle_t*>(&timer_), on_close);
    if (tcp_open_) uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), on_close);
  }

  uv_loop_t* loop_;
  probe_target target_;
  probe_done done_;
  uv_tcp_t tcp_{};
  uv_timer_t timer_{};
  uv_connect_t connect_req_{};
  uv_write_t write_req_{};        // the request
  uv_write_t close_write_req_{};  // the websocket close frame
  int handles_open_ = 0;
  bool tcp_open_ = false;
  bool reported_ = false;
  bool closing_ = false;
  phase phase_ = phase::connecting;
  std::string start_error_;
  std::string request_;
  std::string key_;
  std::string head_;
  protocol::response_sniffer sniffer_{max_head_bytes};
  std::string tail_;
  protocol::close_frame close_frame_;
  tls::engine tls_;  // with a TLS target
  char read_buf_[4096];
  char plain_[4096];
};

probe* start_probe(uv_loop_t* loop, const probe_target& target, probe_done done) {
  auto* p = new probe(loop, target, std::move(done));
  p->begin();
  return p;
}

void cancel_probe(probe* p) { p->cancel(); }

}  // namespace wslb::checker
