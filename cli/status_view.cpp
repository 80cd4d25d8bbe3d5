#include "cli/status_view.h"

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <string_view>

#include "cli/cluster_status.h"
#include "cli/shaping_view.h"
#include "common/config.h"
#include "common/json_text.h"
#include "shm/cluster_view.h"
#include "shm/table_ops.h"
#include "tls/certificate_rows.h"

namespace wslb::cli {

namespace {

constexpr auto relaxed = std::memory_order_relaxed;

const char* error_key(std::size_t kind) {
  static constexpr const char* keys[shm::error_kinds] = {
      "400_bad_request",     "408_request_timeout", "426_upgrade_required",
      "431_header_too_large", "502_bad_gateway",    "503_no_backend",
      "504_gateway_timeout",  "tcp_no_backend_close", "connection_limit",
      "source_limit",         "503_queue_timeout",   "tcp_queue_timeout_close"};
  return keys[kind];
}

const char* to_string(shm::check_result r) {
  switch (r) {
    case shm::check_result::none: return "none";
    case shm::check_result::ok: return "ok";
    case shm::check_result::failed: return "failed";
  }
  return "?";
}

const char* to_string(shm::backend_state s) {
  switch (s) {
    case shm::backend_state::empty: return "empty";
    case shm::backend_state::active: return "active";
    case shm::backend_state::removed: return "removed";
    case shm::backend_state::staged: return "staged";
  }
  return "?";
}

std::string num(std::uint64_t v) { return std::to_string(v); }
std::string num(std::int64_t v) { return std::to_string(v); }

bool slot_shown(const shm::worker_row& w) { return w.state.load(relaxed) != shm::worker_state::empty; }
bool backend_shown(const shm::backend_row& b) {
  return b.state.load(relaxed) != shm::backend_state::empty;
}
std::int64_t ms_left(std::int64_t deadline, std::int64_t now) {
  return deadline > now ? deadline - now : 0;
}

std::int64_t days_left(std::int64_t not_after_ms, std::int64_t now) {
  tls::certificate_info info;
  info.not_after_ms = not_after_ms;
  return info.days_left(now);
}

// "tls":{"certificates":[...],"ticket_keys":N,"ticket_key_age_s":S}; "tls":null when off.
std::string tls_json(const shm::table& t, std::int64_t now) {
  const auto certs = tls::read_published_certificates(t.tls);
  if (certs.empty()) return "\"tls\":null";
  std::string out = "\"tls\":{\"certificates\":[";
  for (std::size_t i = 0; i < certs.size(); ++i) {
    const std::int64_t days = days_left(certs[i].not_after_ms, now);
    out += std::string(i ? "," : "") +
           "{\"subject\":" + json_string(printable_text(certs[i].subject)) +
           ",\"key\":" + json_string(printable_text(certs[i].key_kind)) +
           ",\"not_after_ms\":" + num(certs[i].not_after_ms) + ",\"days_left\":" + num(days) +
           ",\"expiring\":" + (days < tls::expiry_warning_days ? "true" : "false") + "}";
  }
  const std::int64_t rotated = t.tls.keys_rotated_ms.load(relaxed);
  const shm::tls_totals sums = shm::sum_tls(t);
  return out + "],\"ticket_keys\":" + std::to_string(t.tls.key_count.load(relaxed)) +
         ",\"ticket_key_age_s\":" + (rotated ? num((now - rotated) / 1000) : "null") +
         ",\"handshakes\":" + num(sums.handshakes) + ",\"resumed\":" + num(sums.resumed) +
         ",\"failed\":" + num(sums.failed) + ",\"abandoned\":" + num(sums.abandoned) +
         ",\"parked\":" + num(sums.parked) + "}";
}

std::string tls_text(const shm::table& t, std::int64_t now) {
  const auto certs = tls::read_published_certificates(t.tls);
  if (certs.empty()) return {};
  std::string out = "\nTLS CERTIFICATES\n";
  for (const auto& c : certs) {
    const std::int64_t days = days_left(c.not_after_ms, now);
    out += "  " + printable_text(c.subject) + "  " + printable_text(c.key_kind) + "  expires " +
           tls::format_utc(c.not_after_ms) + " (" + num(days) + " days left" +
           (days < tls::expiry_warning_days ? ", RENEW SOON" : "") + ")\n";
  }
  const std::int64_t rotated = t.tls.keys_rotated_ms.load(relaxed);
  out += "  session-ticket keys: " + std::to_string(t.tls.key_count.load(relaxed)) +
         (rotated ? ", current one " + num((now - rotated) / 1000) + " s old" : std::string()) +
         "\n";
  const shm::tls_totals sums = shm::sum_tls(t);
  return out + "  handshakes " + num(sums.handshakes) + " (resumed " + num(sums.resumed) +
         "), failed " + num(sums.failed) + ", abandoned " + num(sums.abandoned) +
         "; connections parked " + num(sums.parked) + "\n";
}

// A `tls` backend's settings as the row holds them: what its certificate is verified
// against and for which name. Empty strings for sni and ca: none given.
struct backend_tls_view {
  bool on = false;
  std::string sni;
  std::string ca;
  std::string verified_name;  // sni=, else the configured host (a name, or an IP address)
};

backend_tls_view tls_of(const shm::backend_row& row) {
  backend_tls_view v;
  v.on = row.tls.load(relaxed) != 0;
  if (!v.on) return v;
  v.sni = std::string(shm::fixed_text(row.tls_sni, sizeof row.tls_sni));
  v.ca = std::string(shm::fixed_text(row.tls_ca, sizeof row.tls_ca));
  const std::string_view address = shm::address_of(row);
  std::string_view host = address.substr(0, address.rfind(':'));
  if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  v.verified_name = v.sni.empty() ? std::string(host) : v.sni;
  return v;
}

// ,"tls":{"sni":...,"verify_name":...,"ca":...} or ,"tls":null
std::string backend_tls_json(const shm::backend_row& row) {
  const backend_tls_view v = tls_of(row);
  if (!v.on) return ",\"tls\":null";
  return ",\"tls\":{\"sni\":" + (v.sni.empty() ? "null" : json_string(printable_text(v.sni))) +
         ",\"verify_name\":" + json_string(printable_text(v.verified_name)) +
         ",\"ca\":" + (v.ca.empty() ? "null" : json_string(printable_text(v.ca))) + "}";
}

std::string backend_tls_text(const shm::backend_row& row) {
  const backend_tls_view v = tls_of(row);
  if (!v.on) return {};
  return "    tls: certificate verified for " + printable_text(v.verified_name) +
         (v.sni.empty() ? "" : " (sni)") + " against " +
         (v.ca.empty() ? std::string("the system CA store") : printable_text(v.ca)) + "\n";
}

}  // namespace

std::string printable_text(std::string_view raw) {
  std::string out;
  for (char ch : raw) {
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += ch;
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

const char* to_string(shm::admin_state s) {
  switch (s) {
    case shm::admin_state::ready: return "ready";
    case shm::admin_state::drain: return "drain";
    case shm::admin_state::maint: return "maint";
  }
  return "?";
}

const char* to_string(shm::worker_state s) {
  switch (s) {
    case shm::worker_state::empty: return "empty";
    case shm::worker_state::starting: return "starting";
    case shm::worker_state::running: return "running";
    case shm::worker_state::draining: return "draining";
    case shm::worker_state::backoff: return "backoff";
    case shm::worker_state::failed: return "failed";
    case shm::worker_state::predecessor: return "predecessor";
  }
  return "?";
}

std::string render_status_json(const shm::table& t, std::int64_t now) {
  const auto& h = t.header;
  std::string out = "{\"name\":" + json_string(shown(h.name)) + ",\"master_pid\":" +
                    std::to_string(h.master_pid.load()) +
                    ",\"listen\":" + json_string(shown(h.listen)) +
                    ",\"uptime_s\":" + num((now - h.master_started_ms.load()) / 1000) +
                    ",\"generation\":" + std::to_string(h.current_generation.load()) +
                    ",\"workers_per_generation\":" +
                    std::to_string(h.workers_per_generation.load()) +
                    ",\"listening\":" + (h.listening.load() ? "true" : "false") +
                    ",\"stopping\":" + (h.stopping.load() ? "true" : "false") +
                    ",\"queued\":" + num(shm::sum_queued(t)) + rebalance_json(t, now) +
                    ",\"handover_lost\":" + num(shm::handover_lost(t)) +
                    ",\"version\":" + json_string(shown(h.master_version)) +
                    ",\"build_id\":" + json_string(shown(h.master_build_id)) +
                    ",\"layout\":" + std::to_string(h.version) + ",\"workers\":[";
  bool first = true;
  for (std::size_t s = 0; s < shm::worker_rows_in_use(t); ++s) {
    const auto& w = t.workers[s];
    if (!slot_shown(w)) continue;
    const auto state = w.state.load(relaxed);
    out += first ? "" : ",";
    first = false;
    out += "{\"slot\":" + num(std::uint64_t{s}) + ",\"pid\":" + std::to_string(w.pid.load()) +
           ",\"state\":\"" + to_string(state) + "\",\"generation\":" +
           std::to_string(w.generation.load()) + ",\"connections\":" + num(w.connections.load()) +
           ",\"accepted\":" + num(w.accepted.load()) + ",\"handed_over\":" +
           num(w.handed_over.load()) + ",\"handed_in\":" + num(w.handed_in.load()) +
           ",\"build_id\":" + json_string(shown(w.build_id)) +
           ",\"restarts\":" + std::to_string(w.restarts.load());
    if (state == shm::worker_state::draining) {
      out += ",\"drain_left_ms\":" + num(ms_left(w.drain_deadline_ms.load(), now));
    }
    if (state == shm::worker_state::backoff) {
      out += ",\"next_attempt_ms\":" + num(ms_left(w.backoff_until_ms.load(), now));
    }
    out += "}";
  }
  out += "],\"backends\":[";
  first = true;
  for (std::size_t b = 0; b < shm::backend_rows_in_use(t); ++b) {
    const auto& row = t.backends[b];
    if (!backend_shown(row)) continue;
    const shm::backend_totals sums = shm::sum_backend(t, b);
    out += first ? "" : ",";
    first = false;
    out += "{\"address\":" + json_string(shown(row.address)) + ",\"state\":\"" +
           to_string(row.state.load()) + "\",\"weight\":" + std::to_string(row.weight.load()) +
           ",\"active\":" + num(sums.active) + ",\"maxconn\":" +
           (row.maxconn.load() ? num(std::uint64_t{row.maxconn.load()}) : "null") +
           backend_tls_json(row) + shaping_json(row, sums, now) +
           ",\"cluster_active\":" + num(row.cluster_active.load(relaxed)) +
           ",\"tier_active\":" + num(shm::tier_active(t, b)) +
           ",\"inherited_active\":" + num(row.inherited_active.load(relaxed)) +
           ",\"active_per_worker\":{";
    bool first_worker = true;
    for (std::size_t s = 0; s < shm::worker_rows_in_use(t); ++s) {
      if (!slot_shown(t.workers[s])) continue;
      out += first_worker ? "" : ",";
      first_worker = false;
      out += "\"" + num(std::uint64_t{s}) + "\":" + num(t.workers[s].backends[b].active.load());
    }
    const std::int64_t last = row.last_check_ms.load();
    out += "},\"total\":" + num(sums.total) + ",\"bytes_in\":" + num(sums.bytes_in) +
           ",\"bytes_out\":" + num(sums.bytes_out) + ",\"failures\":" + num(sums.failures) +
           ",\"healthy\":" + (row.healthy.load() ? "true" : "false") +
           ",\"health\":\"" + (row.healthy.load() ? "up" : "down") + "\",\"admin_state\":\"" +
           to_string(row.admin.load()) + "\"" +
           ",\"transitions\":" + num(row.transitions.load()) + ",\"check\":{\"streak\":" +
           std::to_string(row.check_streak.load()) + ",\"last_result\":\"" +
           to_string(row.last_result.load()) + "\",\"last_error\":" +
           json_string(printable_text(shm::read_last_error(row))) + ",\"last_check_ms_ago\":" +
           (last ? num(now - last) : "null") +
           ",\"passive_fail_streak\":" + std::to_string(row.passive_fail_streak.load()) + "}}";
  }
  out += "],\"errors\":{";
  for (std::size_t k = 0; k < shm::error_kinds; ++k) {
    const std::uint64_t n = shm::sum_errors(t, k);
    out += std::string(k ? "," : "") + "\"" + error_key(k) + "\":" + num(n);
  }
  const auto& c = t.checker;
  out += "},\"checker\":{\"pid\":" + std::to_string(c.pid.load()) + ",\"kind\":\"" +
         to_string(static_cast<check_kind>(c.kind.load())) + "\",\"interval_ms\":" +
         std::to_string(c.interval_ms.load()) + ",\"timeout_ms\":" +
         std::to_string(c.timeout_ms.load()) + ",\"rise\":" + std::to_string(c.rise.load()) +
         ",\"fall\":" + std::to_string(c.fall.load()) + ",\"restarts\":" +
         std::to_string(c.restarts.load()) + "},\"cluster\":" + render_cluster_json(t, now) + "," +
         tls_json(t, now) + "}\n";
  return out;
}

std::string render_status_text(const shm::table& t, std::int64_t now) {
  const auto& h = t.header;
  char line[512];
  std::string out;
  const std::int64_t up = (now - h.master_started_ms.load()) / 1000;
  std::snprintf(line, sizeof line,
                "instance %s  master pid %d  listen %s%s  uptime %lldh%02lldm%02llds  generation "
                "%u (%u workers)\n\n",
                shown(h.name).c_str(), h.master_pid.load(), shown(h.listen).c_str(),
                h.listening.load() ? "" : " (closed)",
                static_cast<long long>(up / 3600), static_cast<long long>(up / 60 % 60),
                static_cast<long long>(up % 60), h.current_generation.load(),
                h.workers_per_generation.load());
  out += line;
  out.insert(out.size() - 2, "  binary " + shown(h.master_version) + " build " +
                                 shown(h.master_build_id).substr(0, 12) + " layout " +
                                 std::to_string(h.version));
  if (const std::uint64_t lost = shm::handover_lost(t); lost > 0) {
    out += "handover_lost " + num(lost) +
           " (tunnels sent to a worker that died before taking them in)\n\n";
  }
  out += "WORKERS\n";
  std::snprintf(line, sizeof line, "  %-4s %-8s %-9s %-4s %11s %10s %8s  %s\n", "SLOT", "PID",
                "STATE", "GEN", "CONNECTIONS", "ACCEPTED", "RESTARTS", "NOTE");
  out += line;
  for (std::size_t s = 0; s < shm::worker_rows_in_use(t); ++s) {
    const auto& w = t.workers[s];
    if (!slot_shown(w)) continue;
    const auto state = w.state.load(relaxed);
    std::string note;
    if (state == shm::worker_state::draining) {
      note = "drain ends in " + std::to_string(ms_left(w.drain_deadline_ms.load(), now) / 1000) + " s";
    } else if (state == shm::worker_state::backoff) {
      note = "next attempt in " + std::to_string(ms_left(w.backoff_until_ms.load(), now)) + " ms";
    } else if (state == shm::worker_state::failed) {
      note = "fatal configuration: not restarted";
    } else if (state == shm::worker_state::predecessor) {
      note = "hands over from the predecessor's table";
    }
    if (shown(w.build_id) != shown(h.master_build_id)) {
      // An upgrade is under way: this worker runs the other build.
      note += (note.empty() ? "build " : ", build ") + shown(w.build_id).substr(0, 12);
    }
    std::snprintf(line, sizeof line, "  %-4zu %-8d %-9s %-4u %11" PRIu64 " %10" PRIu64 " %8u  %s\n",
                  s, w.pid.load(), to_string(state), w.generation.load(), w.connections.load(),
                  w.accepted.load(), w.restarts.load(), note.c_str());
    out += line;
  }
  out += "\nBACKENDS\n";
  std::snprintf(line, sizeof line, "  %-22s %-7s %-5s %6s %-6s %8s %10s %12s %12s %8s  %s\n",
                "ADDRESS", "STATE", "ADMIN", "WEIGHT", "HEALTH", "ACTIVE", "TOTAL", "BYTES_IN",
                "BYTES_OUT", "FAILURES", "LAST CHECK");
  out += line;
  for (std::size_t b = 0; b < shm::backend_rows_in_use(t); ++b) {
    const auto& row = t.backends[b];
    if (!backend_shown(row)) continue;
    const shm::backend_totals sums = shm::sum_backend(t, b);
    std::string check = to_string(row.last_result.load());
    const std::string error = printable_text(shm::read_last_error(row));
    if (!error.empty()) check += " (" + error + ")";
    const int streak = row.check_streak.load();
    if (streak != 0) check += " streak " + std::to_string(streak);
    std::snprintf(line, sizeof line,
                  "  %-22s %-7s %-5s %6u %-6s %8" PRIu64 " %10" PRIu64 " %12" PRIu64 " %12" PRIu64
                  " %8" PRIu64 "  %s\n",
                  shown(row.address).c_str(), to_string(row.state.load()),
                  to_string(row.admin.load()), row.weight.load(),
                  row.healthy.load() ? "up" : "DOWN", sums.active, sums.total, sums.bytes_in,
                  sums.bytes_out, sums.failures, check.c_str());
    out += line;
    std::string per_worker = "    per worker:";
    for (std::size_t s = 0; s < shm::worker_rows_in_use(t); ++s) {
      if (!slot_shown(t.workers[s])) continue;
      per_worker += " " + std::to_string(s) + "=" + num(t.workers[s].backends[b].active.load());
    }
    if (cluster_enabled(t)) {
      per_worker += "   other nodes " + num(row.cluster_active.load(relaxed)) + ", tier-wide " +
                    num(shm::tier_active(t, b));
    }
    out += per_worker + "\n";
    out += backend_tls_text(row);
    out += shaping_text(row, sums, now);
  }
  std::string errors;
  for (std::size_t k = 0; k < shm::error_kinds; ++k) {
    const std::uint64_t n = shm::sum_errors(t, k);
    if (n) errors += std::string(" ") + error_key(k) + "=" + num(n);
  }
  out += "\nERRORS" + (errors.empty() ? std::string(" none") : errors) + "\n";
  out += rebalance_text(t, now);
  return out + render_cluster_text(t, now) + tls_text(t, now);
}

}  // namespace wslb::cli
