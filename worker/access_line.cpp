#include "worker/access_line.h"

#include <charconv>

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
  const auto end = std::to_chars(digits, digits + sizeof digits, value).ptr;
  out.append(digits, end);
}

// The time text: the date and second are formatted once per second (a line costs a few
// hundred nanoseconds less), the milliseconds put in place for each line.
void add_time(std::string& out, std::int64_t time_ms) {
  static thread_local std::int64_t second = -1;
  static thread_local char text[utc_ms_text_max];
  if (time_ms / 1000 != second) {
    second = time_ms / 1000;
    format_utc_ms(time_ms, text);
  }
  const auto ms = static_cast<int>(time_ms % 1000);
  text[20] = static_cast<char>('0' + ms / 100);
  text[21] = static_cast<char>('0' + ms / 10 % 10);
  text[22] = static_cast<char>('0' + ms % 10);
  out.append(text, utc_ms_text_max - 1);
}

}  // namespace

void render_access_line(const access_line& l, std::string& out) {
  out += "{\"time\":\"";
  add_time(out, l.time_ms);
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
  add_number(out, ",\"duration_ms\":", l.duration_us / 1000, false);
  const auto fraction = static_cast<int>(l.duration_us % 1000);
  const char decimals[] = {'.', static_cast<char>('0' + fraction / 100),
                           static_cast<char>('0' + fraction / 10 % 10),
                           static_cast<char>('0' + fraction % 10)};
  out.append(decimals, sizeof decimals);
  add_number(out, ",\"bytes_in\":", l.bytes_in, false);
  add_number(out, ",\"bytes_out\":", l.bytes_out, false);
  add_text(out, ",\"close_cause\":", l.close_cause);
  add_number(out, ",\"ws_close_code\":", l.ws_close_code, true);
  add_number(out, ",\"worker\":", l.worker, false);
  out += '}';
}

}  // namespace wslb::worker
