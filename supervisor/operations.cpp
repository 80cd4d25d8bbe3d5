#include "supervisor/operations.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <utility>

#include "cli/status_view.h"
#include "common/log.h"
#include "shm/table_ops.h"
#include "supervisor/dashboard_page.h"

namespace wslb::supervisor {

namespace {
constexpr auto relaxed = std::memory_order_relaxed;
// systemd shows the STATUS= line in `systemctl status`; once a second is plenty.
constexpr std::int64_t status_interval_ms = 1'000;

// The first generation runs once as many of its workers accept as a generation has.
bool generation_running(const shm::table& t) {
  const std::uint32_t generation = t.header.current_generation.load(relaxed);
  std::uint32_t running = 0;
  for (std::size_t s = 0; s < shm::worker_rows_in_use(t); ++s) {
    const auto& w = t.workers[s];
    running += w.generation.load(relaxed) == generation &&
               w.state.load(relaxed) == shm::worker_state::running;
  }
  return generation > 0 && running >= t.header.workers_per_generation.load(relaxed);
}
}  // namespace

bool operations::start(uv_loop_t* loop, const config& cfg, const shm::table& t, int admin_fd,
                       std::string& error) {
  table_ = &t;
  loop_ = loop;
  admin_token_ = cfg.admin.token;
  events_.observe(t, unix_ms());
  if (admin_fd < 0) return true;
  if (!server_.start(loop, admin_fd, cfg.admin.token,
                     [this](const admin_request& r) { return answer(r); }, error)) {
    error = "cannot serve the admin listener " + cfg.admin.where.to_string() + ": " + error;
    return false;
  }
  log_line("master", "admin listener http://%s/ (dashboard /, /metrics, /status)%s",
           cfg.admin.where.to_string().c_str(),
           cfg.admin.token.empty() ? "" : ", bearer token required");
  return true;
}

std::string operations::status_line() const {
  const shm::table& t = *table_;
  std::uint64_t connections = 0;
  std::size_t workers = 0;
  for (std::size_t s = 0; s < shm::worker_rows_in_use(t); ++s) {
    const auto state = t.workers[s].state.load(relaxed);
    if (state == shm::worker_state::empty) continue;
    connections += t.workers[s].connections.load(relaxed);
    workers += state == shm::worker_state::running;
  }
  std::size_t backends = 0, up = 0;
  for (std::size_t b = 0; b < shm::backend_rows_in_use(t); ++b) {
    if (t.backends[b].state.load(relaxed) != shm::backend_state::active) continue;
    ++backends;
    up += t.backends[b].healthy.load(relaxed) != 0;
  }
  return "generation " + std::to_string(t.header.current_generation.load(relaxed)) + ": " +
         std::to_string(workers) + " workers running, " + std::to_string(connections) +
         " connections, " + std::to_string(up) + "/" + std::to_string(backends) + " backends up";
}

void operations::tick() {
  if (!table_) return;
  const std::int64_t now = unix_ms();
  events_.observe(*table_, now);
  systemd_.keep_watchdog_fed(monotonic_ms());
  if (!systemd_.enabled() || table_->header.stopping.load(relaxed)) return;
  if (!ready_sent_) {
    if (!generation_running(*table_)) return;
    ready_sent_ = true;
    last_status_ = status_line();
    last_status_ms_ = now;
    const std::string main_pid =
        announce_main_pid_ ? "MAINPID=" + std::to_string(getpid()) + "\n" : std::string();
    systemd_.send(main_pid + "READY=1\nSTATUS=" + last_status_);
    return;
  }
  if (now - last_status_ms_ < status_interval_ms) return;
  std::string line = status_line();
  if (line == last_status_) return;
  last_status_ = std::move(line);
  last_status_ms_ = now;
  systemd_.send("STATUS=" + last_status_);
}

void operations::on_transaction(transaction_event e, const std::string& text) {
  if (e == transaction_event::started) {
    reloading_ = text == "reload";
    if (reloading_) {
      systemd_.send("RELOADING=1\n" + monotonic_usec_assignment() + "\nSTATUS=reloading");
    }
    return;
  }
  if (!std::exchange(reloading_, false)) return;
  const bool ok = e == transaction_event::committed;
  const std::string& summary = text;
  ++(ok ? counters_.reloads_ok : counters_.reloads_failed);
  events_.note("reload", (ok ? "reload: " : "reload failed: ") + summary, unix_ms());
  systemd_.send("READY=1\nSTATUS=" + std::string(ok ? "reloaded: " : "reload failed: ") +
                summary);
}

void operations::stopping(const std::string& how) {
  systemd_.send("STOPPING=1\nSTATUS=" + how);
}

void operations::stop() {
  server_.stop();
  if (admin_reserve_fd_ >= 0) close(admin_reserve_fd_);
  admin_reserve_fd_ = -1;
}

void operations::stop_admin_listening() {
  const int fd = server_.fd();
  if (fd < 0) return;
  admin_reserve_fd_ = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  server_.stop_listening();
}

void operations::resume_admin_listening() {
  if (admin_reserve_fd_ < 0) return;
  const int fd = std::exchange(admin_reserve_fd_, -1);
  std::string error;
  if (!server_.start(loop_, fd, admin_token_, [this](const admin_request& r) { return answer(r); },
                     error)) {
    log_line("master", "cannot serve the admin listener again: %s", error.c_str());
  }
}

void operations::hand_main_pid_to(int pid) {
  systemd_.send("MAINPID=" + std::to_string(pid) + "\nSTATUS=upgraded: master pid " +
                std::to_string(pid));
}

void operations::note(const std::string& kind, const std::string& text) {
  events_.note(kind, text, unix_ms());
}

admin_response operations::answer(const admin_request& request) const {
  admin_response r;
  if (request.path == "/metrics") {
    const metrics_format format = metrics_format_for(request.accept);
    r.content_type = metrics_content_type(format);
    r.body = render_metrics(*table_, counters_, format, unix_ms());
  } else if (request.path == "/status") {
    r.content_type = "application/json";
    r.body = cli::render_status_json(*table_, unix_ms());
  } else if (request.path == "/events") {
    r.content_type = "application/json";
    const std::string after = query_parameter(request.query, "after");
    r.body = events_.render_json(std::strtoull(after.c_str(), nullptr, 10));
  } else if (request.path == "/") {
    r.content_type = "text/html; charset=utf-8";
    r.body = std::string(dashboard_page());
  } else {
    r = plain_admin_response(404, "no page " + request.path + " (try /, /metrics, /status)");
  }
  return r;
}

}  // namespace wslb::supervisor
