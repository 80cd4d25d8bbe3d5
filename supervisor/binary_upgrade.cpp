#include "supervisor/binary_upgrade.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "common/log.h"

namespace wslb::supervisor {

namespace {

constexpr const char* who = "master";

// The last bytes of the new binary's stderr kept for the reply, when it fails.
constexpr std::size_t kept_output_bytes = 4096;

struct named_fd {
  const char* name;
  int inherited_fds::*field;
  bool required;
};
constexpr named_fd fd_names[] = {{"listen", &inherited_fds::listen, true},
                                 {"lock", &inherited_fds::lock, true},
                                 {"control", &inherited_fds::control, true},
                                 {"table", &inherited_fds::table, true},
                                 {"report", &inherited_fds::report, true},
                                 {"log", &inherited_fds::log, false},
                                 {"admin", &inherited_fds::admin, false},
                                 {"state", &inherited_fds::state, false}};

}  // namespace

std::string format_inherited_fds(const inherited_fds& fds) {
  std::string out;
  for (const named_fd& n : fd_names) {
    if (!n.required && fds.*n.field < 0) continue;
    out += (out.empty() ? "" : ",") + std::string(n.name) + "=" + std::to_string(fds.*n.field);
  }
  return out;
}

std::optional<inherited_fds> parse_inherited_fds(std::string_view text, std::string& error) {
  inherited_fds fds;
  while (!text.empty()) {
    const std::size_t comma = text.find(',');
    const std::string_view item = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
    const std::size_t eq = item.find('=');
    const std::string_view name = item.substr(0, eq);
    const named_fd* slot = nullptr;
    for (const named_fd& n : fd_names) {
      if (name == n.name) slot = &n;
    }
    if (slot == nullptr || eq == std::string_view::npos) {
      error = "unknown item '" + std::string(item) + "'";
      return std::nullopt;
    }
    const std::string number(item.substr(eq + 1));
    char* end = nullptr;
    const long v = std::strtol(number.c_str(), &end, 10);
    if (number.empty() || *end != '\0' || v < 0 || v > 1'000'000) {
      error = "bad descriptor '" + number + "' for " + std::string(name);
      return std::nullopt;
    }
    fds.*slot->field = static_cast<int>(v);
  }
  for (const named_fd& n : fd_names) {
    if (n.required && fds.*n.field < 0) {
      error = std::string("no ") + n.name + " descriptor";
      return std::nullopt;
    }
  }
  return fds;
}

std::optional<inherited_fds> take_inherited_fds() {
  const char* text = std::getenv(inherited_fds_variable);
  if (text == nullptr) return std::nullopt;
  const std::string copy = text;
  unsetenv(inherited_fds_variable);
  std::string error;
  std::optional<inherited_fds> fds = parse_inherited_fds(copy, error);
  if (!fds) {
    throw std::runtime_error(std::string(inherited_fds_variable) + "='" + copy + "': " + error);
  }
  for (const named_fd& n : fd_names) {
    const int fd = (*fds).*n.field;
    if (fd < 0) continue;  // an optional one not passed
    if (fcntl(fd, F_GETFD) < 0) {
      throw std::runtime_error(std::string(inherited_fds_variable) + ": " + n.name +
                               " descriptor " + std::to_string(fd) + " is not open");
    }
    fcntl(fd, F_SETFD, FD_CLOEXEC);  // not for this master's own children
  }
  return fds;
}

int sealed_state(const std::string& text, std::string& error) {
  const int fd = memfd_create("wslb-table-state", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) {
    error = std::string("memfd_create: ") + strerror(errno);
    return -1;
  }
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      error = std::string("writing the table's state: ") + strerror(errno);
      close(fd);
      return -1;
    }
    done += static_cast<std::size_t>(n);
  }
  if (fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) != 0) {
    error = std::string("sealing the table's state: ") + strerror(errno);
    close(fd);
    return -1;
  }
  return fd;
}

std::string read_sealed_state(int fd) {
  constexpr int wanted = F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK;
  const int seals = fcntl(fd, F_GET_SEALS);
  if (seals < 0 || (seals & wanted) != wanted) {
    throw std::runtime_error("upgrade: the state descriptor " + std::to_string(fd) +
                             " is not a sealed memfd");
  }
  std::string text;
  char buf[65536];
  for (off_t at = 0;;) {
    const ssize_t n = pread(fd, buf, sizeof buf, at);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      throw std::runtime_error(std::string("upgrade: reading the predecessor's state: ") +
                               strerror(errno));
    }
    if (n == 0) return text;
    text.append(buf, static_cast<std::size_t>(n));
    at += n;
  }
}

void report_successor_worker(int fd, const successor_worker& w) {
  if (fd < 0) return;
  const std::string line = "W " + std::to_string(w.row) + " " + std::to_string(w.pid) + " " +
                           std::to_string(w.generation) + "\n";
  [[maybe_unused]] const ssize_t n = write(fd, line.data(), line.size());
}

void report_upgrade(int& fd, bool ready, const std::string& text) {
  if (fd < 0) return;
  const std::string line = std::string(ready ? "R " : "E ") + text + "\n";
  [[maybe_unused]] const ssize_t n = write(fd, line.data(), line.size());
  close(fd);
  fd = -1;
}

void restore_own_stderr(inherited_fds& fds) {
  if (fds.log < 0) return;
  dup2(fds.log, STDERR_FILENO);
  close(fds.log);
  fds.log = -1;
}

std::string own_executable() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return {};
  std::string path(buf, static_cast<std::size_t>(n));
  // A binary replaced on disk since start (the usual way to deploy one) reads "(deleted)".
  constexpr std::string_view deleted = " (deleted)";
  if (path.size() > deleted.size() && path.ends_with(deleted)) {
    path.resize(path.size() - deleted.size());
  }
  return path;
}

// The pipe from the new master and the ready deadline, until one of them decides.
struct upgrade_watch {
  binary_upgrade* owner = nullptr;
  uv_poll_t poll{};
  uv_poll_t output_poll{};
  uv_timer_t timer{};
  int read_fd = -1;
  int output_fd = -1;  // read end of the new master's stderr, until it restores its own
  bool output_polled = false;
  int open_handles = 3;
  std::string got;
  std::vector<successor_worker> workers;  // named before its "R"
  std::string output;  // its last kept_output_bytes
  binary_upgrade::done_fn done;
  bool finished = false;
};

namespace {

// Copies what the new master wrote to its stderr to ours and keeps its tail. False at its end
// (EOF, or an error).
bool copy_output(upgrade_watch* w) {
  char buf[4096];
  for (;;) {
    const ssize_t n = read(w->output_fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return true;
    if (n <= 0) return false;
    [[maybe_unused]] const ssize_t written = write(STDERR_FILENO, buf, static_cast<size_t>(n));
    w->output.append(buf, static_cast<std::size_t>(n));
    if (w->output.size() > kept_output_bytes) {
      w->output.erase(0, w->output.size() - kept_output_bytes);
    }
  }
}

void stop_output(upgrade_watch* w) {
  if (!w->output_polled) return;
  w->output_polled = false;
  uv_poll_stop(&w->output_poll);
}

// The last non-empty line the new binary wrote to stderr, or "".
std::string last_output_line(const std::string& output) {
  std::size_t end = output.find_last_not_of("\r\n");
  if (end == std::string::npos) return {};
  const std::size_t start = output.rfind('\n', end);
  return output.substr(start == std::string::npos ? 0 : start + 1,
                       end - (start == std::string::npos ? 0 : start + 1) + 1);
}

}  // namespace

void finish_upgrade(upgrade_watch* w, bool ok, const std::string& message) {
  if (w->finished) return;
  w->finished = true;
  binary_upgrade* owner = w->owner;
  owner->state_ = nullptr;
  if (ok) owner->workers_ = std::move(w->workers);
  // A new master that failed is killed: whatever it started dies with it (its workers have
  // PDEATHSIG); the caller repairs the table rows it took.
  if (!ok && owner->pid_ > 0) kill(owner->pid_, SIGKILL);
  // What it wrote before it ended is in the pipe already; a binary that gave no reason of its
  // own is quoted by its last line.
  if (w->output_polled) copy_output(w);
  stop_output(w);
  const std::string said = last_output_line(w->output);
  // A wslb that could not start said why on the pipe and logged the same line.
  const bool quoted = said.empty() || said.find(message) != std::string::npos;
  const std::string full = ok || quoted ? message : message + ": " + said;
  const auto close_cb = [](uv_handle_t* h) {
    auto* st = static_cast<upgrade_watch*>(h->data);
    if (--st->open_handles == 0) {
      close(st->read_fd);
      close(st->output_fd);
      delete st;
    }
  };
  uv_close(reinterpret_cast<uv_handle_t*>(&w->poll), close_cb);
  uv_close(reinterpret_cast<uv_handle_t*>(&w->output_poll), close_cb);
  uv_close(reinterpret_cast<uv_handle_t*>(&w->timer), close_cb);
  const binary_upgrade::done_fn done = std::move(w->done);
  done(ok, full);
}

namespace {

void on_report_readable(uv_poll_t* h, int status, int) {
  auto* w = static_cast<upgrade_watch*>(h->data);
  char buf[1024];
  const ssize_t n = status < 0 ? 0 : read(w->read_fd, buf, sizeof buf);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n > 0) {
    w->got.append(buf, static_cast<std::size_t>(n));
    for (std::size_t end; (end = w->got.find('\n')) != std::string::npos;) {
      const std::string line = w->got.substr(0, end);
      w->got.erase(0, end + 1);
      unsigned long long row = 0, generation = 0;
      int pid = 0;
      if (std::sscanf(line.c_str(), "W %llu %d %llu", &row, &pid, &generation) == 3) {
        w->workers.push_back(successor_worker{static_cast<std::size_t>(row), pid,
                                                      static_cast<std::uint32_t>(generation)});
        continue;
      }
      finish_upgrade(w, line.rfind("R ", 0) == 0, line.size() > 2 ? line.substr(2) : line);
      return;
    }
    return;
  }
  // EOF: the new binary is gone without a word (its own error went to the log).
  finish_upgrade(w, false, "the new binary exited before it was ready");
}

void on_output_readable(uv_poll_t* h, int status, int) {
  auto* w = static_cast<upgrade_watch*>(h->data);
  // At its end (the new master restored its own stderr, or exited) there is no more to copy.
  if (status < 0 || !copy_output(w)) stop_output(w);
}

void on_ready_timeout(uv_timer_t* t) {
  finish_upgrade(static_cast<upgrade_watch*>(t->data), false,
                 "the new master was not ready within " +
                     std::to_string(upgrade_ready_timeout_ms / 1000) + " s; killed it");
}

}  // namespace

std::string binary_upgrade::start(uv_loop_t* loop, const std::string& binary,
                                  const std::vector<std::string>& run_args, inherited_fds fds,
                                  const std::vector<std::string>& environment, done_fn done) {
  if (state_ != nullptr) return "an upgrade is already in progress";
  if (access(binary.c_str(), X_OK) != 0) {
    return "cannot execute " + binary + ": " + strerror(errno);
  }
  int pipe_fds[2];
  int output_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) return std::string("pipe: ") + strerror(errno);
  if (pipe2(output_fds, O_CLOEXEC | O_NONBLOCK) != 0) {
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    return std::string("pipe: ") + strerror(errno);
  }
  workers_.clear();
  fds.report = pipe_fds[1];
  fds.log = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 0);
  std::vector<std::string> argv_text{binary, "run"};
  argv_text.insert(argv_text.end(), run_args.begin(), run_args.end());
  std::vector<char*> argv;
  for (auto& a : argv_text) argv.push_back(a.data());
  argv.push_back(nullptr);
  const std::string variable = format_inherited_fds(fds);

  const pid_t pid = fork();
  if (pid < 0) {
    for (int fd : {pipe_fds[0], pipe_fds[1], output_fds[0], output_fds[1], fds.log}) close(fd);
    return std::string("fork: ") + strerror(errno);
  }
  if (pid == 0) {
    // The new master: not a child that dies with this one (no PDEATHSIG), default signals.
    for (int sig : {SIGCHLD, SIGHUP, SIGUSR2, SIGQUIT, SIGTERM, SIGINT, SIGPIPE}) {
      signal(sig, SIG_DFL);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    // Its stderr is the pipe, blocking as a stderr is expected to be; ours goes as "log".
    fcntl(output_fds[1], F_SETFL, fcntl(output_fds[1], F_GETFL) & ~O_NONBLOCK);
    dup2(output_fds[1], STDERR_FILENO);
    for (const named_fd& n : fd_names) {
      if (fds.*n.field >= 0) fcntl(fds.*n.field, F_SETFD, 0);
    }
    setenv(inherited_fds_variable, variable.c_str(), 1);
    for (const std::string& assignment : environment) {
      const std::size_t eq = assignment.find('=');
      if (eq != std::string::npos) {
        setenv(assignment.substr(0, eq).c_str(), assignment.c_str() + eq + 1, 1);
      }
    }
    execv(binary.c_str(), argv.data());
    int report = fds.report;
    report_upgrade(report, false, "cannot execute " + binary + ": " + strerror(errno));
    _exit(127);
  }
  close(pipe_fds[1]);
  close(output_fds[1]);
  close(fds.log);
  pid_ = pid;
  auto* w = new upgrade_watch{};
  w->owner = this;
  w->read_fd = pipe_fds[0];
  w->output_fd = output_fds[0];
  w->done = std::move(done);
  state_ = w;
  log_line(who, "upgrade: started %s as pid %d", binary.c_str(), pid);
  uv_poll_init(loop, &w->poll, w->read_fd);
  w->poll.data = w;
  uv_timer_init(loop, &w->timer);
  w->timer.data = w;
  uv_poll_start(&w->poll, UV_READABLE | UV_DISCONNECT, on_report_readable);
  uv_poll_init(loop, &w->output_poll, w->output_fd);
  w->output_poll.data = w;
  w->output_polled = true;
  uv_poll_start(&w->output_poll, UV_READABLE | UV_DISCONNECT, on_output_readable);
  uv_timer_start(&w->timer, on_ready_timeout, upgrade_ready_timeout_ms, 0);
  return {};
}

}  // namespace wslb::supervisor
