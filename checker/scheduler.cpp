#include "checker/scheduler.h"

#include "shm/table_ops.h"

#include <netinet/in.h>

#include <algorithm>
#include <atomic>
#include <cstring>

#include "checker/health_row.h"
#include "common/log.h"

namespace wslb::checker {

namespace {
constexpr auto relaxed = std::memory_order_relaxed;
constexpr const char* who = "checker";

// How often the table is re-read for new, removed or re-pointed backends and new settings. A
// reload takes effect within this; reading 64 rows this often costs nothing.
constexpr std::uint64_t scan_period_ms = 100;

constexpr std::uint32_t min_interval_ms = 10;

probe_kind to_probe_kind(check_kind k) {
  switch (k) {
    case check_kind::http: return probe_kind::http;
    case check_kind::websocket: return probe_kind::websocket;
    default: return probe_kind::tcp;
  }
}

bool usable_address(const sockaddr_storage& addr, socklen_t len) {
  return (addr.ss_family == AF_INET && len >= sizeof(sockaddr_in)) ||
         (addr.ss_family == AF_INET6 && len >= sizeof(sockaddr_in6));
}

void log_settings(const check_settings& s) {
  if (s.kind == check_kind::none) {
    log_line(who, "health checks off (--check none): backends keep their current state");
  } else if (s.kind == check_kind::tcp) {
    log_line(who, "tcp checks every %u ms, timeout %u ms, rise %u, fall %u", s.interval_ms,
             s.timeout_ms, s.rise, s.fall);
  } else {
    log_line(who, "%s checks of %s every %u ms, timeout %u ms, rise %u, fall %u",
             to_string(s.kind), s.path.c_str(), s.interval_ms, s.timeout_ms, s.rise, s.fall);
  }
}
}  // namespace

check_settings read_settings(const shm::checker_row& row, const check_config& fallback) {
  check_settings s;
  std::uint32_t kind = 0;
  char path[sizeof row.path];
  // The master writes the fields and then bumps config_epoch. A copy taken while it writes is
  // retried here when the epoch moved under us; one torn by a write that had not bumped yet
  // is corrected at the next scan, which sees the new epoch.
  for (int attempt = 0; attempt < 8; ++attempt) {
    s.epoch = row.config_epoch.load(std::memory_order_acquire);
    if (s.epoch == 0) break;
    kind = row.kind.load(relaxed);
    s.interval_ms = row.interval_ms.load(relaxed);
    s.timeout_ms = row.timeout_ms.load(relaxed);
    s.rise = row.rise.load(relaxed);
    s.fall = row.fall.load(relaxed);
    std::memcpy(path, row.path, sizeof path);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (row.config_epoch.load(relaxed) == s.epoch) break;
  }
  if (s.epoch == 0) {
    kind = static_cast<std::uint32_t>(fallback.kind);
    s.interval_ms = fallback.interval_ms;
    s.timeout_ms = fallback.timeout_ms;
    s.rise = fallback.rise;
    s.fall = fallback.fall;
    s.path = fallback.path;
  } else {
    path[sizeof path - 1] = '\0';
    s.path = path;
  }
  s.kind = kind <= static_cast<std::uint32_t>(check_kind::websocket) ? static_cast<check_kind>(kind)
                                                                     : check_kind::none;
  s.interval_ms = std::max(s.interval_ms, min_interval_ms);
  s.timeout_ms = std::max<std::uint32_t>(s.timeout_ms, 1);
  s.rise = std::max<std::uint32_t>(s.rise, 1);
  s.fall = std::max<std::uint32_t>(s.fall, 1);
  if (s.path.empty() || s.path.front() != '/') s.path.insert(0, "/");
  return s;
}

std::uint64_t first_delay_ms(std::int64_t last_check_unix_ms, std::int64_t now_unix_ms,
                             std::uint32_t interval_ms, std::size_t row, std::size_t rows) {
  if (last_check_unix_ms > 0) {
    const std::int64_t due_in = last_check_unix_ms + interval_ms - now_unix_ms;
    // Beyond one interval ahead means the wall clock stepped back: spread like a fresh start.
    if (due_in > 0 && due_in <= static_cast<std::int64_t>(interval_ms)) {
      return static_cast<std::uint64_t>(due_in);
    }
  }
  rows = std::max<std::size_t>(rows, 1);
  return static_cast<std::uint64_t>(interval_ms) * (row % rows) / rows;
}

scheduler::scheduler(uv_loop_t* loop, shm::table& table, const check_config& fallback)
    : loop_(loop), table_(table), fallback_(fallback) {
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    slots_[i].owner = this;
    slots_[i].row = i;
  }
}

void scheduler::start() {
  uv_timer_init(loop_, &scan_timer_);
  scan_timer_.data = this;
  for (slot& s : slots_) {
    uv_timer_init(loop_, &s.due);
    s.due.data = &s;
  }
  settings_ = read_settings(table_.checker, fallback_);
  log_settings(settings_);
  scan();
  uv_timer_start(&scan_timer_, [](uv_timer_t* t) { static_cast<scheduler*>(t->data)->scan(); },
                 scan_period_ms, scan_period_ms);
}

void scheduler::stop() {
  if (stopping_) return;
  stopping_ = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&scan_timer_), nullptr);
  for (slot& s : slots_) {
    drop_probe(s);
    uv_close(reinterpret_cast<uv_handle_t*>(&s.due), nullptr);
  }
}

void scheduler::scan() {
  if (stopping_) return;
  sync_settings();
  for (std::size_t i = 0; i < slots_.size(); ++i) sync_row(i);
}

void scheduler::sync_settings() {
  check_settings next = read_settings(table_.checker, fallback_);
  if (next.epoch == settings_.epoch) return;
  const check_settings old = settings_;
  settings_ = std::move(next);
  // A reload that left the checks alone (the epochs differ, the settings do not).
  if (static_cast<const check_config&>(old) == settings_) return;
  log_settings(settings_);
  for (slot& s : slots_) {
    if (!s.tracked) continue;
    if (settings_.kind == check_kind::none) {
      drop_probe(s);
      uv_timer_stop(&s.due);
    } else if (s.in_flight == nullptr &&
               (old.kind == check_kind::none || old.interval_ms != settings_.interval_ms)) {
      arm_first(s);  // the new interval counts from each backend's last check
    }
  }
}

void scheduler::sync_row(std::size_t i) {
  slot& s = slots_[i];
  if (i >= shm::backend_rows_in_use(table_)) {
    if (s.tracked) untrack(s);
    return;
  }
  shm::backend_row& row = table_.backends[i];
  // A backend in maintenance is not checked: its health stays as it was.
  if (row.state.load(std::memory_order_acquire) != shm::backend_state::active ||
      row.admin.load(std::memory_order_relaxed) == shm::admin_state::maint) {
    if (s.tracked) untrack(s);
    return;
  }
  const std::uint32_t epoch = row.config_epoch.load(std::memory_order_acquire);
  if (s.tracked && epoch == s.epoch) return;
  s.epoch = epoch;
  // The master writes address and sockaddr before it bumps config_epoch: before it turns a row
  // active, and again when a reload finds the row's host name at a new address.
  char address[shm::address_chars];
  std::memcpy(address, row.address, sizeof address);
  address[sizeof address - 1] = '\0';
  sockaddr_storage addr{};
  const socklen_t len = static_cast<socklen_t>(
      std::min<std::uint32_t>(row.sockaddr_len.load(relaxed), sizeof row.sockaddr_bytes));
  std::memcpy(&addr, row.sockaddr_bytes, len);
  const bool tls = row.tls.load(relaxed) != 0;
  const std::string tls_sni(shm::fixed_text(row.tls_sni, sizeof row.tls_sni));
  const std::string tls_ca(shm::fixed_text(row.tls_ca, sizeof row.tls_ca));
  if (s.tracked && s.address == address && s.addr_len == len &&
      std::memcmp(&s.addr, &addr, len) == 0 && s.tls == tls && s.tls_sni == tls_sni &&
      s.tls_ca == tls_ca) {
    if (tls) load_tls(s);  // a reload: the CA file is read again, as the workers' is
    return;  // same backend, e.g. only its weight changed: keep its rhythm and its probe
  }
  drop_probe(s);
  s.tracked = true;
  s.address = address;
  s.addr = addr;
  s.addr_len = len;
  s.tls = tls;
  s.tls_sni = tls_sni;
  s.tls_ca = tls_ca;
  load_tls(s);
  ++s.target_gen;
  if (!usable_address(addr, len)) {
    log_line(who, "backend %s (row %zu) has no usable socket address; not checked", address, i);
    uv_timer_stop(&s.due);
    return;
  }
  arm_first(s);
}

void scheduler::load_tls(slot& s) {
  s.tls_ctx.reset();
  s.tls_error.clear();
  if (!s.tls) return;
  // ALPN is offered per probe (http and websocket checks), not by the context.
  s.tls_ctx = tls::client_context::load(s.tls_ca, /*alpn_http1=*/false, s.tls_error);
  if (!s.tls_ctx) {
    log_line(who, "backend %s: %s; its checks fail", s.address.c_str(), s.tls_error.c_str());
  }
}

void scheduler::drop_probe(slot& s) {
  if (s.in_flight != nullptr) cancel_probe(s.in_flight);
  s.in_flight = nullptr;
}

void scheduler::untrack(slot& s) {
  drop_probe(s);
  uv_timer_stop(&s.due);
  s.tracked = false;
  s.address.clear();
  ++s.target_gen;
}

void scheduler::arm(slot& s, std::uint64_t delay_ms) {
  uv_timer_start(&s.due, [](uv_timer_t* t) {
    slot& due = *static_cast<slot*>(t->data);
    scheduler& self = *due.owner;
    if (self.stopping_ || !due.tracked || due.in_flight != nullptr ||
        self.settings_.kind == check_kind::none) {
      return;
    }
    self.start_probe_on(due);
  }, delay_ms, 0);
}

void scheduler::arm_first(slot& s) {
  if (settings_.kind == check_kind::none || !usable_address(s.addr, s.addr_len)) {
    uv_timer_stop(&s.due);
    return;
  }
  const std::int64_t last = table_.backends[s.row].last_check_ms.load(std::memory_order_acquire);
  arm(s, first_delay_ms(last, unix_ms(), settings_.interval_ms, s.row, shm::backend_rows_in_use(table_)));
}

void scheduler::start_probe_on(slot& s) {
  probe_target target;
  target.kind = to_probe_kind(settings_.kind);
  target.addr = s.addr;
  target.addr_len = s.addr_len;
  target.host = s.address;
  target.path = settings_.path;
  target.timeout_ms = settings_.timeout_ms;
  if (s.tls) {
    target.tls_ctx = s.tls_ctx ? s.tls_ctx->native() : nullptr;
    target.tls_io = &tls_io_;
    target.tls_error = s.tls_ctx ? std::string() : s.tls_error;
    // The host as configured: "HOST:PORT", "[v6]:PORT".
    std::string_view host = std::string_view(s.address).substr(0, s.address.rfind(':'));
    if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
    target.tls_host = std::string(host);
    target.tls_sni = s.tls_sni;
  }
  s.started_ms = monotonic_ms();
  const std::size_t i = s.row;
  const std::uint64_t gen = s.target_gen;
  s.in_flight = start_probe(loop_, target, [this, i, gen](const probe_outcome& outcome) {
    on_probe_done(i, gen, outcome);
  });
}

void scheduler::on_probe_done(std::size_t i, std::uint64_t gen, const probe_outcome& outcome) {
  slot& s = slots_[i];
  s.in_flight = nullptr;
  if (stopping_) return;
  const std::int64_t finished = unix_ms();
  sync_row(i);  // the row may have been removed or re-pointed while the probe ran
  if (!s.tracked || s.target_gen != gen) return;
  const auto flip = record_check(table_.backends[i], outcome.status, outcome.error,
                                 settings_.rise, settings_.fall, finished);
  if (flip) {
    log_line(who, "backend %s %s -> %s %s", s.address.c_str(), health_word(flip->from_healthy),
             health_word(flip->to_healthy), flip->reason.c_str());
  }
  // Start-to-start rhythm: a probe that took longer than the interval is followed at once,
  // never by a second one in parallel.
  const std::int64_t elapsed = monotonic_ms() - s.started_ms;
  const std::int64_t interval = settings_.interval_ms;
  arm(s, elapsed >= interval ? 0 : static_cast<std::uint64_t>(interval - elapsed));
}

}  // namespace wslb::checker
