#include "supervisor/tls_upkeep.h"

#include "common/log.h"
#include "supervisor/master_state.h"
#include "tls/certificate_rows.h"
#include "tls/client_context.h"
#include "tls/server_context.h"
#include "tls/ticket_keys.h"

namespace wslb::supervisor {

namespace {

constexpr auto relaxed = std::memory_order_relaxed;

void log_certificates(const config& cfg, std::int64_t now_ms) {
  if (!cfg.tls.server) return;
  for (const tls::certificate_info& c : cfg.tls.server->certificates()) {
    const std::int64_t days = c.days_left(now_ms);
    if (days < tls::expiry_warning_days) {
      log_line(who, "warning: certificate %s (%s) expires in %lld days, on %s", c.subject.c_str(),
               c.cert_file.c_str(), static_cast<long long>(days),
               tls::format_utc(c.not_after_ms).c_str());
    } else {
      log_line(who, "certificate %s (%s, %s) valid for %lld days", c.subject.c_str(),
               c.key_kind.c_str(), c.cert_file.c_str(), static_cast<long long>(days));
    }
  }
}

}  // namespace

void publish_tls(shm::table& t, const config& cfg, std::int64_t now_ms) {
  tls::publish_certificates(
      t.tls, cfg.tls.server ? cfg.tls.server->certificates() : std::vector<tls::certificate_info>{});
  log_certificates(cfg, now_ms);
  rotate_ticket_keys_when_due(t, cfg, now_ms);
}

void rotate_ticket_keys_when_due(shm::table& t, const config& cfg, std::int64_t now_ms) {
  if (!cfg.tls.enabled()) return;
  const bool first = t.tls.key_count.load(relaxed) == 0;
  if (!first && now_ms - t.tls.keys_rotated_ms.load(relaxed) < cfg.tls.ticket_rotation_ms) return;
  if (!tls::rotate_ticket_keys(t.tls, now_ms)) {
    log_line(who, "cannot make a session-ticket key (random generator failed); keeping the old");
    return;
  }
  if (!first) log_certificates(cfg, now_ms);
}

std::string tls_step::prepare(config& next) {
  if (std::string error = tls::load_listener_tls(next, unix_ms()); !error.empty()) return error;
  return tls::load_backend_tls(next);
}

void tls_step::commit(const config& next) { publish_tls(table_, next, unix_ms()); }

}  // namespace wslb::supervisor
