#include "bench/loadgen.h"

#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "protocol/websocket.h"

namespace wslb::bench {

const char* to_string(failure f) {
  switch (f) {
    case failure::connect: return "connect";
    case failure::handshake: return "handshake";
    case failure::echo: return "echo";
    case failure::dropped: return "dropped";
    case failure::timeout: return "timeout";
    case failure::close: return "close";
    case failure::count_: break;
  }
  return "?";
}

void run_result::merge(const run_result& o) {
  attempted += o.attempted;
  opened += o.opened;
  verified += o.verified;
  messages += o.messages;
  messages_total += o.messages_total;
  bytes += o.bytes;
  cycles += o.cycles;
  tls_resumed += o.tls_resumed;
  for (int i = 0; i < static_cast<int>(failure::count_); ++i) failures[i] += o.failures[i];
  open_s = std::max(open_s, o.open_s);
  measured_s = std::max(measured_s, o.measured_s);
  rtt.merge(o.rtt);
}

std::uint64_t run_result::failed() const {
  std::uint64_t n = 0;
  for (auto f : failures) n += f;
  return n;
}

namespace {

std::int64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

std::int64_t seconds_to_ns(double s) { return static_cast<std::int64_t>(s * 1e9); }

enum class conn_state : std::uint8_t { free, connecting, tls_handshaking, handshaking, open, closing };

bool opening(conn_state s) {
  return s == conn_state::connecting || s == conn_state::tls_handshaking ||
         s == conn_state::handshaking;
}
enum class outgoing : std::uint8_t { none, handshake, message, close };

// One client connection. No buffers of its own except while the handshake answer is read.
struct client {
  int fd = -1;
  SSL* ssl = nullptr;  // with --tls
  conn_state state = conn_state::free;
  outgoing out = outgoing::none;
  bool awaiting = false;    // a message is outstanding
  bool want_write = false;  // EPOLLOUT is in the interest set
  bool got_close = false;   // churn: the close frame came back
  std::uint32_t sent = 0;      // bytes of the outgoing buffer written
  std::uint32_t received = 0;  // bytes of the expected answer received
  std::int64_t started_ns = 0;  // when the current step (open, message) began
  std::int64_t cycle_ns = 0;    // churn: when the cycle began
  std::string head;             // the handshake answer, while it is read
};

enum class phase : std::uint8_t { opening, waiting_go, warmup, measuring, draining, verifying, done };

constexpr std::uint64_t tag_go = ~std::uint64_t{0};
constexpr std::size_t read_buffer_size = 256 * 1024;
constexpr std::size_t max_handshake_answer = 8 * 1024;

class load_loop {
 public:
  load_loop(const loadgen_options& o, const loop_links& links) : o_(o), links_(links) {}
  ~load_loop() {
    for (auto& c : clients_) {
      if (c.ssl != nullptr) SSL_free(c.ssl);
      if (c.fd >= 0) ::close(c.fd);
    }
    if (epoll_fd_ >= 0) ::close(epoll_fd_);
    if (session_ != nullptr) SSL_SESSION_free(session_);
    if (tls_ctx_ != nullptr) SSL_CTX_free(tls_ctx_);
  }
  run_result run();

 private:
  void prepare_buffers();
  void open_more();
  void open_client(client& c);
  void on_event(client& c, std::uint32_t events);
  void on_connected(client& c);
  void drive_tls(client& c);
  void keep_session(client& c);
  ssize_t io_send(client& c, const char* data, std::size_t len);
  ssize_t io_recv(client& c);
  void read_handshake(client& c);
  void read_answer(client& c);
  void read_close(client& c);
  void start_output(client& c, outgoing what);
  void write_some(client& c);
  void set_interest(client& c, bool want_write);
  void message_done(client& c, std::int64_t now);
  void fail(client& c, failure why);
  void release(client& c);
  void end_opening();
  void go();
  void send_first_messages(std::int64_t now);
  void tick(std::int64_t now);
  void sweep_timeouts(std::int64_t now);
  bool in_flight() const { return pending_ + busy_ > 0; }
  const std::string& buffer_of(outgoing what) const;

  const loadgen_options& o_;
  loop_links links_;
  int epoll_fd_ = -1;
  SSL_CTX* tls_ctx_ = nullptr;
  SSL_SESSION* session_ = nullptr;  // --tls-resume: the session new connections resume
  std::vector<client> clients_;
  std::vector<std::uint8_t> read_buf_ = std::vector<std::uint8_t>(read_buffer_size);
  std::string handshake_, accept_line_, message_, close_frame_, expected_prefix_;
  std::uint32_t expected_len_ = 0;  // the echoed frame's total length
  run_result result_;
  phase phase_ = phase::opening;
  std::size_t next_open_ = 0;       // echo/hold: next client slot to open
  std::uint64_t next_index_ = 0;    // connection counter for spreading over addresses
  std::size_t pending_ = 0;         // connections being opened
  std::size_t busy_ = 0;            // connections with a message outstanding or closing
  std::int64_t start_ns_ = 0, open_deadline_ns_ = 0, measure_start_ns_ = 0, measure_end_ns_ = 0;
  std::int64_t phase_deadline_ns_ = 0, opened_at_ns_ = 0, last_sweep_ns_ = 0;
};

void load_loop::prepare_buffers() {
  const std::string key = protocol::make_websocket_key();
  handshake_ = "GET " + o_.path + " HTTP/1.1\r\nHost: " + o_.host +
               "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
               "\r\nSec-WebSocket-Version: 13\r\n\r\n";
  accept_line_ = "sec-websocket-accept: " + protocol::websocket_accept(key);
  std::transform(accept_line_.begin(), accept_line_.end(), accept_line_.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });

  // Every connection sends the same masked frame; only its length and the echo's bytes matter.
  std::string payload(o_.size, '\0');
  for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>('a' + i % 26);
  const std::uint8_t mask[4] = {0x5a, 0x17, 0xc3, 0x81};
  std::uint8_t header[protocol::max_frame_header];
  auto n = protocol::write_frame_header(header, protocol::opcode::binary, payload.size(), mask);
  message_.assign(reinterpret_cast<char*>(header), n);
  std::string masked = payload;
  protocol::apply_mask(reinterpret_cast<std::uint8_t*>(masked.data()), masked.size(), mask);
  message_ += masked;

  n = protocol::write_frame_header(header, protocol::opcode::binary, payload.size(), nullptr);
  expected_prefix_.assign(reinterpret_cast<char*>(header), n);
  expected_len_ = static_cast<std::uint32_t>(n + payload.size());
  expected_prefix_ += payload.substr(0, 16);

  const auto close = protocol::make_close_frame(protocol::close_normal, true);
  close_frame_.assign(reinterpret_cast<const char*>(close.bytes.data()), close.size);
}

const std::string& load_loop::buffer_of(outgoing what) const {
  switch (what) {
    case outgoing::handshake: return handshake_;
    case outgoing::message: return message_;
    default: return close_frame_;
  }
}

void load_loop::set_interest(client& c, bool want_write) {
  if (c.want_write == want_write) return;
  c.want_write = want_write;
  epoll_event ev{};
  ev.events = EPOLLIN | (want_write ? EPOLLOUT : 0u);
  ev.data.u64 = static_cast<std::uint64_t>(&c - clients_.data());
  epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.fd, &ev);
}

void load_loop::open_client(client& c) {
  const auto index = o_.first_index + next_index_++ * o_.index_stride;
  ++result_.attempted;
  const std::size_t ns = o_.sources.size();
  const auto& target = o_.targets[(ns == 0 ? index : index / ns) % o_.targets.size()];
  c = client{};
  c.started_ns = c.cycle_ns = now_ns();
  c.fd = socket(target.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c.fd < 0) {
    ++result_.failures[static_cast<int>(failure::connect)];
    return;
  }
  const int one = 1;
  setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (ns > 0) {
    // Let connect() choose the port, so one source address serves every target: without this
    // a bind to port 0 reserves the port for all destinations and 28k connections exhaust it.
    setsockopt(c.fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    const auto& source = o_.sources[index % ns];
    if (bind(c.fd, reinterpret_cast<const sockaddr*>(&source.addr), source.addr_len) != 0) {
      ::close(c.fd);
      c.fd = -1;
      ++result_.failures[static_cast<int>(failure::connect)];
      return;
    }
  }
  if (connect(c.fd, reinterpret_cast<const sockaddr*>(&target.addr), target.addr_len) != 0 &&
      errno != EINPROGRESS) {
    ::close(c.fd);
    c.fd = -1;
    ++result_.failures[static_cast<int>(failure::connect)];
    return;
  }
  c.state = conn_state::connecting;
  c.want_write = true;
  epoll_event ev{};
  ev.events = EPOLLOUT;
  ev.data.u64 = static_cast<std::uint64_t>(&c - clients_.data());
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, c.fd, &ev);
  ++pending_;
}

void load_loop::open_more() {
  while (pending_ < o_.max_pending && next_open_ < clients_.size()) {
    open_client(clients_[next_open_++]);
  }
}

void load_loop::release(client& c) {
  if (opening(c.state)) --pending_;
  if (c.awaiting || c.state == conn_state::closing) --busy_;
  if (c.ssl != nullptr) {
    // Without this, SSL_free takes the session for a broken one and makes it unresumable.
    SSL_set_shutdown(c.ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_free(c.ssl);
    c.ssl = nullptr;
  }
  if (c.fd >= 0) {
    epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c.fd, nullptr);
    ::close(c.fd);
  }
  c.fd = -1;
  c.state = conn_state::free;
  c.awaiting = false;
  std::string().swap(c.head);
}

void load_loop::fail(client& c, failure why) {
  ++result_.failures[static_cast<int>(why)];
  release(c);
  if (o_.mode == load_mode::churn && phase_ == phase::measuring) open_client(c);
}

void load_loop::start_output(client& c, outgoing what) {
  c.out = what;
  c.sent = 0;
  write_some(c);
}

// Writes straight through; EPOLLOUT is only asked for when the kernel refuses part of it.
void load_loop::write_some(client& c) {
  const std::string& buf = buffer_of(c.out);
  while (c.sent < buf.size()) {
    const ssize_t w = io_send(c, buf.data() + c.sent, buf.size() - c.sent);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        set_interest(c, true);
        return;
      }
      fail(c, c.state == conn_state::handshaking ? failure::handshake : failure::echo);
      return;
    }
    c.sent += static_cast<std::uint32_t>(w);
  }
  c.out = outgoing::none;
  set_interest(c, false);
}

void load_loop::on_connected(client& c) {
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) {
    fail(c, failure::connect);
    return;
  }
  if (tls_ctx_ != nullptr) {
    c.ssl = SSL_new(tls_ctx_);
    if (c.ssl == nullptr || SSL_set_fd(c.ssl, c.fd) != 1) {
      fail(c, failure::handshake);
      return;
    }
    if (!o_.tls_server_name.empty()) SSL_set_tlsext_host_name(c.ssl, o_.tls_server_name.c_str());
    if (session_ != nullptr) SSL_set_session(c.ssl, session_);
    c.state = conn_state::tls_handshaking;
    drive_tls(c);
    return;
  }
  c.state = conn_state::handshaking;
  start_output(c, outgoing::handshake);
}

// --tls-resume: the first session that can be resumed is the one every later connection
// offers. It is copied once the WebSocket answer has been read, when a TLS 1.3 server's
// tickets (sent after its handshake, ahead of any data) have arrived. A copy, because OpenSSL
// marks a connection's own session unresumable when that connection ends without
// close_notify: a proxy that closes that way is measured for its resumption all the same (the
// integration tests check close_notify).
void load_loop::keep_session(client& c) {
  if (session_ != nullptr || c.ssl == nullptr) return;
  const SSL_SESSION* s = SSL_get0_session(c.ssl);
  if (s != nullptr && SSL_SESSION_is_resumable(s)) session_ = SSL_SESSION_dup(s);
}

// The TLS handshake, driven by readiness: then the WebSocket handshake inside it.
void load_loop::drive_tls(client& c) {
  ERR_clear_error();
  const int r = SSL_connect(c.ssl);
  if (r == 1) {
    if (SSL_session_reused(c.ssl)) ++result_.tls_resumed;
    c.state = conn_state::handshaking;
    start_output(c, outgoing::handshake);
    return;
  }
  switch (SSL_get_error(c.ssl, r)) {
    case SSL_ERROR_WANT_READ: set_interest(c, false); return;
    case SSL_ERROR_WANT_WRITE: set_interest(c, true); return;
    default: fail(c, failure::handshake); return;
  }
}

// send(2), or SSL_write with --tls: bytes written, or -1 with errno (EAGAIN: try again).
ssize_t load_loop::io_send(client& c, const char* data, std::size_t len) {
  if (c.ssl == nullptr) return send(c.fd, data, len, MSG_NOSIGNAL);
  ERR_clear_error();
  std::size_t written = 0;
  const int r = SSL_write_ex(c.ssl, data, len, &written);
  if (r == 1) return static_cast<ssize_t>(written);
  const int e = SSL_get_error(c.ssl, r);
  errno = e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ ? EAGAIN : EIO;
  return -1;
}

// recv(2) into read_buf_, or with --tls everything OpenSSL can decrypt now (it may hold more
// than one read's worth, which epoll would not announce again): bytes, 0 at the end, or -1
// with errno.
ssize_t load_loop::io_recv(client& c) {
  if (c.ssl == nullptr) return recv(c.fd, read_buf_.data(), read_buf_.size(), 0);
  std::size_t total = 0;
  while (total < read_buf_.size()) {
    ERR_clear_error();
    std::size_t n = 0;
    const int r = SSL_read_ex(c.ssl, read_buf_.data() + total, read_buf_.size() - total, &n);
    if (r == 1) {
      total += n;
      continue;
    }
    if (total > 0) break;
    const int e = SSL_get_error(c.ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
      errno = EAGAIN;
      return -1;
    }
    if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)) return 0;
    errno = EIO;
    return -1;
  }
  return static_cast<ssize_t>(total);
}

void load_loop::read_handshake(client& c) {
  const ssize_t n = io_recv(c);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) {
    fail(c, failure::handshake);
    return;
  }
  c.head.append(reinterpret_cast<const char*>(read_buf_.data()), static_cast<std::size_t>(n));
  const auto end = c.head.find("\r\n\r\n");
  if (end == std::string::npos) {
    if (c.head.size() > max_handshake_answer) fail(c, failure::handshake);
    return;
  }
  std::string lower = c.head.substr(0, end + 2);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  if (lower.rfind("http/1.1 101", 0) != 0 || lower.find(accept_line_ + "\r\n") == std::string::npos ||
      c.head.size() != end + 4) {
    fail(c, failure::handshake);
    return;
  }
  std::string().swap(c.head);
  if (o_.tls_resume) keep_session(c);
  c.state = conn_state::open;
  --pending_;
  ++result_.opened;
  if (o_.mode == load_mode::churn) {
    c.awaiting = true;
    ++busy_;
    c.received = 0;
    c.started_ns = now_ns();
    start_output(c, outgoing::message);
  }
}

void load_loop::message_done(client& c, std::int64_t now) {
  c.awaiting = false;
  --busy_;
  ++result_.messages_total;
  const auto rtt = static_cast<std::uint64_t>(now - c.started_ns);
  switch (o_.mode) {
    case load_mode::echo:
      if (phase_ == phase::measuring && c.started_ns >= measure_start_ns_ && now <= measure_end_ns_) {
        ++result_.messages;
        result_.bytes += o_.size;
        result_.rtt.record(rtt);
      }
      if (phase_ == phase::warmup || phase_ == phase::measuring) {
        c.awaiting = true;
        ++busy_;
        c.received = 0;
        c.started_ns = now;
        start_output(c, outgoing::message);
      }
      break;
    case load_mode::hold:
      ++result_.verified;
      result_.rtt.record(rtt);
      release(c);
      break;
    case load_mode::churn:
      c.state = conn_state::closing;
      ++busy_;
      c.got_close = false;
      start_output(c, outgoing::close);
      break;
  }
}

void load_loop::read_answer(client& c) {
  const ssize_t n = io_recv(c);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0 || !c.awaiting) {
    fail(c, c.awaiting ? failure::echo : failure::dropped);
    return;
  }
  const auto got = static_cast<std::uint32_t>(n);
  // The header and the first payload bytes must be exactly what we sent (unmasked).
  for (std::uint32_t i = c.received; i < expected_prefix_.size() && i < c.received + got; ++i) {
    if (read_buf_[i - c.received] != static_cast<std::uint8_t>(expected_prefix_[i])) {
      fail(c, failure::echo);
      return;
    }
  }
  c.received += got;
  if (c.received > expected_len_) {
    fail(c, failure::echo);
  } else if (c.received == expected_len_) {
    message_done(c, now_ns());
  }
}

void load_loop::read_close(client& c) {
  const ssize_t n = io_recv(c);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n > 0) {
    if (!c.got_close && read_buf_[0] == 0x88) c.got_close = true;
    return;
  }
  if (!c.got_close) {
    fail(c, failure::close);
    return;
  }
  const auto now = now_ns();
  if (phase_ == phase::measuring && now <= measure_end_ns_) {
    ++result_.cycles;
    result_.rtt.record(static_cast<std::uint64_t>(now - c.cycle_ns));
  }
  release(c);
  if (phase_ == phase::measuring) open_client(c);
}

void load_loop::on_event(client& c, std::uint32_t events) {
  switch (c.state) {
    case conn_state::free:
      return;
    case conn_state::connecting:
      on_connected(c);
      return;
    case conn_state::tls_handshaking:
      drive_tls(c);
      return;
    case conn_state::handshaking:
    case conn_state::open:
    case conn_state::closing:
      if ((events & EPOLLOUT) != 0 && c.out != outgoing::none) {
        const int fd = c.fd;
        write_some(c);
        // A failure may have released the slot (and churn may have reused it at once).
        if (c.fd != fd || c.state == conn_state::free || c.state == conn_state::connecting) return;
      }
      if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) == 0) return;
      if (c.state == conn_state::handshaking) {
        read_handshake(c);
      } else if (c.state == conn_state::open) {
        read_answer(c);
      } else {
        read_close(c);
      }
      return;
  }
}

void load_loop::end_opening() {
  for (auto& c : clients_) {
    if (opening(c.state)) fail(c, failure::timeout);
  }
  result_.attempted += clients_.size() - next_open_;  // never started: counted as timeouts
  result_.failures[static_cast<int>(failure::timeout)] += clients_.size() - next_open_;
  next_open_ = clients_.size();
  opened_at_ns_ = now_ns();
  result_.open_s = static_cast<double>(opened_at_ns_ - start_ns_) / 1e9;
  phase_ = phase::waiting_go;
  if (links_.report_fd >= 0) {
    const char byte = 'O';
    [[maybe_unused]] auto w = write(links_.report_fd, &byte, 1);
  }
  if (links_.go_fd < 0 && o_.mode != load_mode::hold) go();
}

// Every open connection sends its first message: the closed loop of `echo`, or the one
// verifying round trip of `hold`.
void load_loop::send_first_messages(std::int64_t now) {
  for (auto& c : clients_) {
    if (c.state != conn_state::open) continue;
    c.awaiting = true;
    ++busy_;
    c.received = 0;
    c.started_ns = now;
    start_output(c, outgoing::message);
  }
}

void load_loop::go() {
  const auto now = now_ns();
  switch (o_.mode) {
    case load_mode::echo:
      phase_ = phase::warmup;
      measure_start_ns_ = now + seconds_to_ns(o_.warmup_s);
      measure_end_ns_ = measure_start_ns_ + seconds_to_ns(o_.duration_s);
      send_first_messages(now);
      break;
    case load_mode::hold:
      phase_ = phase::verifying;
      phase_deadline_ns_ = now + seconds_to_ns(o_.timeout_s);
      send_first_messages(now);
      break;
    case load_mode::churn:
      phase_ = phase::measuring;
      measure_start_ns_ = now;
      measure_end_ns_ = now + seconds_to_ns(o_.duration_s);
      for (auto& c : clients_) open_client(c);
      break;
  }
}

void load_loop::sweep_timeouts(std::int64_t now) {
  const auto limit = seconds_to_ns(o_.timeout_s);
  for (auto& c : clients_) {
    if (c.state == conn_state::free) continue;
    if ((opening(c.state) || c.awaiting || c.state == conn_state::closing) && now - c.started_ns > limit)
      fail(c, failure::timeout);
  }
}

void load_loop::tick(std::int64_t now) {
  if (now - last_sweep_ns_ > 100'000'000) {
    last_sweep_ns_ = now;
    sweep_timeouts(now);
  }
  switch (phase_) {
    case phase::opening:
      open_more();
      if ((next_open_ == clients_.size() && pending_ == 0) || now > open_deadline_ns_) end_opening();
      break;
    case phase::waiting_go:
      if (links_.go_fd < 0 && o_.mode == load_mode::hold &&
          now >= opened_at_ns_ + seconds_to_ns(o_.duration_s))
        go();
      break;
    case phase::warmup:
      if (now >= measure_start_ns_) phase_ = phase::measuring;
      break;
    case phase::measuring:
      if (now >= measure_end_ns_) {
        result_.measured_s = static_cast<double>(measure_end_ns_ - measure_start_ns_) / 1e9;
        if (o_.mode == load_mode::churn) {
          phase_ = phase::draining;
          phase_deadline_ns_ = now + seconds_to_ns(o_.timeout_s);
        } else {
          phase_ = phase::done;
        }
      }
      break;
    case phase::draining:
      if (!in_flight() || now > phase_deadline_ns_) phase_ = phase::done;
      break;
    case phase::verifying:
      if (busy_ == 0 || now > phase_deadline_ns_) {
        for (auto& c : clients_)
          if (c.awaiting) fail(c, failure::timeout);
        phase_ = phase::done;
      }
      break;
    case phase::done:
      break;
  }
}

run_result load_loop::run() {
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0 || o_.targets.empty()) {
    result_.failures[static_cast<int>(failure::connect)] = o_.connections;
    return result_;
  }
  prepare_buffers();
  if (o_.tls) {
    tls_ctx_ = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(tls_ctx_, TLS1_3_VERSION);
    SSL_CTX_set_mode(tls_ctx_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  }
  clients_.resize(o_.mode == load_mode::churn ? o_.concurrency : o_.connections);
  if (links_.go_fd >= 0) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = tag_go;
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, links_.go_fd, &ev);
  }
  start_ns_ = now_ns();
  open_deadline_ns_ = start_ns_ + seconds_to_ns(o_.timeout_s) +
                      seconds_to_ns(static_cast<double>(clients_.size()) / 2000.0);
  if (o_.mode == load_mode::churn) {
    next_open_ = clients_.size();
    end_opening();
  } else {
    open_more();
  }

  std::vector<epoll_event> events(1024);
  while (phase_ != phase::done) {
    const int n = epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), 10);
    for (int i = 0; i < n; ++i) {
      const auto data = events[i].data.u64;
      if (data == tag_go) {
        char byte = 0;
        const auto r = read(links_.go_fd, &byte, 1);
        if (r == 1 && byte == 'G' && phase_ == phase::waiting_go) {
          go();
        } else if (r == 0) {
          phase_ = phase::done;  // the coordinator is gone: stop
        }
        continue;
      }
      on_event(clients_[data], events[i].events);
    }
    tick(now_ns());
  }
  if (result_.measured_s == 0 && measure_end_ns_ > 0)
    result_.measured_s = static_cast<double>(std::min(now_ns(), measure_end_ns_) - measure_start_ns_) / 1e9;
  return result_;
}

}  // namespace

run_result run_load(const loadgen_options& options, const loop_links& links) {
  load_loop loop(options, links);
  return loop.run();
}

}  // namespace wslb::bench
