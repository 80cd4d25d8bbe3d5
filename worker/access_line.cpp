#include "worker/access_line.h"

#include <cstdio>

#include "common/json_text.h"
#include "common/log.h"

namespace wslb::worker {

namespace {

void add_text(std::string& out, const char* key, std::string_view value) {
  out += key;
  if (value.empty()) {
    out += "null";
  } else {
    append_json_string(out, value);
  }
}

void add_number(std::string& out, const char* key, std::uint64_t value, bool zero_is_null) {
  out += key;
  if (zero_is_null && value == 0) {
    out += "null";
    return;
  }
  char digits[24];
  const int n = std::snprintf(digits, sizeof digits, "%llu", static_cast<unsigned long long>(value));
  out.append(digits, static_cast<std::size_t>(n));
}

}  // namespace

void render_access_line(const access_line& l, std::string& out) {
  char time[utc_ms_text_max];
  format_utc_ms(l.time_ms, time);
  out += "{\"time\":\"";
  out += time;
  out += '"';
  add_text(out, ",\"client\":", l.client);
  add_text(out, ",\"forwarded_for\":", l.forwarded_for);
  add_text(out, ",\"backend\":", l.backend);
  add_text(out, ",\"kind\":", l.kind);
  add_text(out, ",\"method\":", l.method);
  add_text(out, ",\"path\":", l.path);
  add_text(out, ",\"host\":", l.host);
  add_text(out, ",\"user_agent\":", l.user_agent);
  add_number(out, ",\"status\":", l.status, true);
  char duration[40];
  const int n = std::snprintf(duration, sizeof duration, ",\"duration_ms\":%llu.%03llu",
                              static_cast<unsigned long long>(l.duration_us / 1000),
                              static_cast<unsigned long long>(l.duration_us % 1000));
  out.append(duration, static_cast<std::size_t>(n));
  add_number(out, ",\"bytes_in\":", l.bytes_in, false);
  add_number(out, ",\"bytes_out\":", l.bytes_out, false);
  add_text(out, ",\"close_cause\":", l.close_cause);
  add_number(out, ",\"ws_close_code\":", l.ws_close_code, true);
  add_number(out, ",\"worker\":", l.worker, false);
  out += '}';
}

}  // namespace wslb::worker
