#include "demo/echo_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common/exit_codes.h"
#include "common/log.h"
#include "demo/echo_connection.h"

namespace wslb::demo {
namespace {

constexpr std::size_t read_chunk = 64 * 1024;
constexpr int accept_batch = 256;
constexpr std::int64_t accept_pause_ms = 100;
// A connection we have finished with waits this long for the peer's FIN before we close it.
constexpr std::int64_t linger_ms = 5000;

struct connection {
  explicit connection(int f, const echo_settings& s) : fd(f), sm(s) {}
  int fd;
  echo_connection sm;
  std::string pending;  // answer bytes the kernel would not take yet
  std::size_t pending_off = 0;
  bool close_after_flush = false;
  bool lingering = false;  // our side is shut down; discarding input until the peer's FIN
  bool peer_eof = false;
  std::int64_t linger_until = 0;
};

class server_loop {
 public:
  server_loop(const echo_options& options, const std::vector<int>& listen_fds, std::string who)
      : options_(options), listen_fds_(listen_fds), who_(std::move(who)),
        read_buf_(read_chunk) {
    settings_.id = options.id;
    settings_.http_status = options.http_status;
    settings_.expect_proxy = options.proxy_protocol;
  }

  ~server_loop() {
    for (auto& c : conns_)
      if (c) ::close(c->fd);
    if (epoll_fd_ >= 0) ::close(epoll_fd_);
    if (signal_fd_ >= 0) ::close(signal_fd_);
  }

  int run();

 private:
  enum : std::uint64_t { tag_signal = 1ull << 32, tag_listener = 2ull << 32 };

  bool watch_listeners(bool on);
  void on_accept(int listen_fd);
  void on_event(connection& c, std::uint32_t events);
  void on_readable(connection& c);
  void on_writable(connection& c);
  void deliver(connection& c);
  void finish(connection& c);
  void set_interest(connection& c, std::uint32_t events);
  void close_connection(connection& c);
  void sweep_lingering(std::int64_t now);

  const echo_options& options_;
  const std::vector<int>& listen_fds_;
  std::string who_;
  echo_settings settings_;
  int epoll_fd_ = -1;
  int signal_fd_ = -1;
  std::vector<std::unique_ptr<connection>> conns_;  // indexed by descriptor
  std::vector<std::uint8_t> read_buf_;              // one read buffer for the whole loop
  std::string out_;                                 // answer being built, reused
  bool accepting_ = true;
  std::int64_t resume_accept_at_ = 0;
  std::size_t lingering_ = 0;
};

bool server_loop::watch_listeners(bool on) {
  for (int fd : listen_fds_) {
    if (on) {
      // EPOLLEXCLUSIVE: with several processes sharing a listener, wake one, not all.
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLEXCLUSIVE;
      ev.data.u64 = tag_listener | static_cast<std::uint32_t>(fd);
      if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) return false;
    } else {
      // EPOLLEXCLUSIVE registrations cannot be modified, only removed and added again.
      epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
    }
  }
  accepting_ = on;
  return true;
}

int server_loop::run() {
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  signal_fd_ = signalfd(-1, &stop_signals, SFD_NONBLOCK | SFD_CLOEXEC);
  if (epoll_fd_ < 0 || signal_fd_ < 0) {
    log_line(who_.c_str(), "cannot create epoll/signalfd: %s", std::strerror(errno));
    return exit_code::failure;
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = tag_signal;
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, signal_fd_, &ev);
  if (!watch_listeners(true)) {
    log_line(who_.c_str(), "cannot watch listeners: %s", std::strerror(errno));
    return exit_code::failure;
  }

  epoll_event events[256];
  while (true) {
    int timeout = -1;
    const auto now = monotonic_ms();
    if (!accepting_) timeout = static_cast<int>(std::max<std::int64_t>(0, resume_accept_at_ - now));
    if (lingering_ > 0 && (timeout < 0 || timeout > 1000)) timeout = 1000;
    const int n = epoll_wait(epoll_fd_, events, 256, timeout);
    if (n < 0 && errno != EINTR) {
      log_line(who_.c_str(), "epoll_wait: %s", std::strerror(errno));
      return exit_code::failure;
    }
    for (int i = 0; i < n; ++i) {
      const std::uint64_t data = events[i].data.u64;
      if (data == tag_signal) {
        signalfd_siginfo info{};
        [[maybe_unused]] auto r = read(signal_fd_, &info, sizeof info);
        return exit_code::ok;
      }
      if ((data & tag_listener) != 0) {
        on_accept(static_cast<int>(data & 0xffffffffu));
        continue;
      }
      const auto fd = static_cast<std::size_t>(data);
      if (fd < conns_.size() && conns_[fd]) on_event(*conns_[fd], events[i].events);
    }
    const auto later = monotonic_ms();
    if (!accepting_ && later >= resume_accept_at_) watch_listeners(true);
    if (lingering_ > 0) sweep_lingering(later);
  }
}

void server_loop::on_accept(int listen_fd) {
  for (int i = 0; i < accept_batch; ++i) {
    const int fd = accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // Out of descriptors: stop accepting for a moment instead of spinning on the listener.
        log_line(who_.c_str(), "accept: %s; pausing accepts for %lld ms", std::strerror(errno),
                 static_cast<long long>(accept_pause_ms));
        watch_listeners(false);
        resume_accept_at_ = monotonic_ms() + accept_pause_ms;
      }
      return;  // EAGAIN (another process took it), ECONNABORTED, ...
    }
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (static_cast<std::size_t>(fd) >= conns_.size()) conns_.resize(static_cast<std::size_t>(fd) + 1024);
    conns_[static_cast<std::size_t>(fd)] = std::make_unique<connection>(fd, settings_);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = static_cast<std::uint64_t>(fd);
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
      close_connection(*conns_[static_cast<std::size_t>(fd)]);
    }
  }
}

void server_loop::on_event(connection& c, std::uint32_t events) {
  if ((events & EPOLLOUT) != 0 || ((events & (EPOLLERR | EPOLLHUP)) != 0 && !c.pending.empty())) {
    on_writable(c);
    return;
  }
  on_readable(c);
}

void server_loop::set_interest(connection& c, std::uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = static_cast<std::uint64_t>(c.fd);
  epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.fd, &ev);
}

void server_loop::on_readable(connection& c) {
  const ssize_t n = recv(c.fd, read_buf_.data(), read_buf_.size(), 0);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
    close_connection(c);
    return;
  }
  if (c.lingering) {
    if (n == 0) close_connection(c);
    return;
  }
  out_.clear();
  if (n == 0) {
    if (!options_.black_hole) c.sm.peer_closed(out_);
    c.close_after_flush = true;
    c.peer_eof = true;
  } else if (options_.black_hole) {
    return;  // swallowed: a black hole never answers
  } else if (c.sm.feed(read_buf_.data(), static_cast<std::size_t>(n), out_) ==
             feed_result::close_after_flush) {
    c.close_after_flush = true;
  }
  deliver(c);
}

// Writes straight through; only what the kernel refuses is kept, and reading stops until it
// has gone out, so a connection never holds more than one read's worth of answer.
void server_loop::deliver(connection& c) {
  std::size_t off = 0;
  while (off < out_.size()) {
    const ssize_t w = send(c.fd, out_.data() + off, out_.size() - off, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      close_connection(c);
      return;
    }
    off += static_cast<std::size_t>(w);
  }
  if (off < out_.size()) {
    c.pending.assign(out_, off, std::string::npos);
    c.pending_off = 0;
    set_interest(c, EPOLLOUT);
    return;
  }
  if (c.close_after_flush) finish(c);
}

void server_loop::on_writable(connection& c) {
  while (c.pending_off < c.pending.size()) {
    const ssize_t w = send(c.fd, c.pending.data() + c.pending_off, c.pending.size() - c.pending_off,
                           MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      close_connection(c);
      return;
    }
    c.pending_off += static_cast<std::size_t>(w);
  }
  std::string().swap(c.pending);
  c.pending_off = 0;
  if (c.close_after_flush) {
    finish(c);
    return;
  }
  set_interest(c, EPOLLIN);
}

// Everything is written: shut our side and wait briefly for the peer's FIN, because closing
// with unread input would send a reset that can destroy the answer still in flight.
void server_loop::finish(connection& c) {
  if (c.peer_eof) {
    close_connection(c);
    return;
  }
  shutdown(c.fd, SHUT_WR);
  c.lingering = true;
  c.linger_until = monotonic_ms() + linger_ms;
  ++lingering_;
  set_interest(c, EPOLLIN);
}

void server_loop::sweep_lingering(std::int64_t now) {
  for (auto& c : conns_) {
    if (c && c->lingering && now >= c->linger_until) close_connection(*c);
  }
}

void server_loop::close_connection(connection& c) {
  const auto fd = static_cast<std::size_t>(c.fd);
  if (c.lingering) --lingering_;
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c.fd, nullptr);
  ::close(c.fd);
  conns_[fd].reset();
}

std::string bound_address(int fd, const endpoint& asked) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return asked.to_string();
  std::uint16_t port = asked.port;
  if (ss.ss_family == AF_INET) port = ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  if (ss.ss_family == AF_INET6) port = ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  endpoint e = asked;
  e.port = port;
  return e.to_string();
}

int open_listener(const endpoint& where, std::string& error) {
  const int fd = socket(where.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = std::strerror(errno);
    return -1;
  }
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, reinterpret_cast<const sockaddr*>(&where.addr), where.addr_len) != 0 ||
      listen(fd, 4096) != 0) {
    error = std::strerror(errno);
    ::close(fd);
    return -1;
  }
  return fd;
}

bool write_ready_file(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (f == nullptr) return false;
  const bool ok = std::fputs(text.c_str(), f) >= 0;
  if (std::fclose(f) != 0 || !ok) return false;
  return std::rename(tmp.c_str(), path.c_str()) == 0;  // readers never see a partial file
}

void raise_descriptor_limit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
}

// The parent of --processes N: forwards SIGTERM/SIGINT to its children and notices a child
// that dies on its own.
int supervise(const std::vector<pid_t>& children, const std::string& who) {
  sigset_t waited;
  sigemptyset(&waited);
  sigaddset(&waited, SIGTERM);
  sigaddset(&waited, SIGINT);
  sigaddset(&waited, SIGCHLD);
  std::size_t alive = children.size();
  int result = exit_code::ok;
  bool stopping = false;
  while (alive > 0) {
    siginfo_t info{};
    const int sig = sigwaitinfo(&waited, &info);
    if (sig < 0) continue;
    if (sig == SIGTERM || sig == SIGINT) {
      stopping = true;
      for (pid_t pid : children) kill(pid, SIGTERM);
      continue;
    }
    int status = 0;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
      --alive;
      if (!stopping) {
        log_line(who.c_str(), "server process %d ended unexpectedly (status %d); stopping",
                 static_cast<int>(pid), status);
        result = exit_code::failure;
        stopping = true;
        for (pid_t other : children) kill(other, SIGTERM);
      }
    }
  }
  return result;
}

}  // namespace

int run_echo_server(const echo_options& options) {
  const std::string who = "echo " + options.id;
  raise_descriptor_limit();

  sigset_t blocked, previous;
  sigemptyset(&blocked);
  sigaddset(&blocked, SIGTERM);
  sigaddset(&blocked, SIGINT);
  sigaddset(&blocked, SIGCHLD);
  sigprocmask(SIG_BLOCK, &blocked, &previous);
  struct restore_mask {
    sigset_t mask;
    ~restore_mask() { sigprocmask(SIG_SETMASK, &mask, nullptr); }
  } restore{previous};

  std::vector<int> listen_fds;
  struct close_all {
    std::vector<int>& fds;
    ~close_all() {
      for (int fd : fds) ::close(fd);
    }
  } closer{listen_fds};

  std::string addresses, ready;
  for (const auto& where : options.listen) {
    std::string error;
    const int fd = open_listener(where, error);
    if (fd < 0) {
      log_line(who.c_str(), "cannot listen on %s: %s", where.to_string().c_str(), error.c_str());
      return exit_code::cannot_start;
    }
    listen_fds.push_back(fd);
    const auto bound = bound_address(fd, where);
    addresses += (addresses.empty() ? "" : ", ") + bound;
    ready += bound + "\n";
  }
  if (listen_fds.empty()) {
    log_line(who.c_str(), "nothing to listen on");
    return exit_code::cannot_start;
  }
  const unsigned processes = options.processes == 0 ? 1 : options.processes;
  log_line(who.c_str(), "echo backend listening on %s (%u process%s%s%s)", addresses.c_str(),
           processes, processes == 1 ? "" : "es", options.proxy_protocol ? ", PROXY protocol" : "",
           options.black_hole ? ", black hole" : "");
  if (!options.ready_file.empty() && !write_ready_file(options.ready_file, ready)) {
    log_line(who.c_str(), "cannot write ready file %s: %s", options.ready_file.c_str(),
             std::strerror(errno));
    return exit_code::cannot_start;
  }

  if (processes == 1) {
    server_loop loop(options, listen_fds, who);
    return loop.run();
  }

  std::vector<pid_t> children;
  const pid_t parent = getpid();
  for (unsigned i = 0; i < processes; ++i) {
    const pid_t pid = fork();
    if (pid < 0) {
      log_line(who.c_str(), "fork: %s", std::strerror(errno));
      for (pid_t child : children) kill(child, SIGTERM);
      supervise(children, who);
      return exit_code::cannot_start;
    }
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (getppid() != parent) _exit(exit_code::ok);  // the parent is already gone
      int code;
      {
        server_loop loop(options, listen_fds, who + "/" + std::to_string(i));
        code = loop.run();
      }
      _exit(code);
    }
    children.push_back(pid);
  }
  return supervise(children, who);
}

}  // namespace wslb::demo
