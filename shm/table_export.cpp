#include "shm/table_export.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <map>
#include <vector>

#include "shm/table_ops.h"

namespace wslb::shm {

namespace {

constexpr auto relaxed = std::memory_order_relaxed;
constexpr std::string_view format_name = "wslb-table-export";

std::string hex(const void* bytes, std::size_t n) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * n);
  for (std::size_t i = 0; i < n; ++i) {
    const auto b = static_cast<const unsigned char*>(bytes)[i];
    out += digits[b >> 4];
    out += digits[b & 15];
  }
  return out;
}

std::string hex_text(const char* field, std::size_t size) {
  return hex(field, strnlen(field, size));
}

bool unhex(std::string_view text, std::string& out) {
  if (text.size() % 2 != 0) return false;
  out.clear();
  for (std::size_t i = 0; i < text.size(); i += 2) {
    unsigned value = 0;
    const auto [end, ec] = std::from_chars(text.data() + i, text.data() + i + 2, value, 16);
    if (ec != std::errc() || end != text.data() + i + 2) return false;
    out += static_cast<char>(value);
  }
  return true;
}

// One line: its kind, the row it is about (when it names one) and its named fields.
struct record {
  std::string kind;
  std::uint64_t row = 0;
  std::map<std::string, std::string, std::less<>> fields;

  // A numeric field; 0 when absent. False (and `why` set) when present but not a number.
  bool number(std::string_view name, std::uint64_t& out, std::string& why) const {
    out = 0;
    const auto it = fields.find(name);
    if (it == fields.end()) return true;
    const std::string& v = it->second;
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
    if (ec == std::errc() && end == v.data() + v.size()) return true;
    why = kind + " " + std::string(name) + "='" + v + "' is not a number";
    return false;
  }
  // A hex text field; "" when absent.
  bool text(std::string_view name, std::string& out, std::string& why) const {
    out.clear();
    const auto it = fields.find(name);
    if (it == fields.end() || unhex(it->second, out)) return true;
    why = kind + " " + std::string(name) + " is not hex";
    return false;
  }
};

// "kind [row] name=value ..." (row: a leading number).
record parse_line(std::string_view line) {
  record r;
  std::size_t at = 0;
  bool first = true;
  while (at < line.size()) {
    std::size_t end = line.find(' ', at);
    if (end == std::string_view::npos) end = line.size();
    const std::string_view word = line.substr(at, end - at);
    at = end + 1;
    if (word.empty()) continue;
    if (first) {
      r.kind = word;
      first = false;
      continue;
    }
    const std::size_t eq = word.find('=');
    if (eq == std::string_view::npos) {
      std::from_chars(word.data(), word.data() + word.size(), r.row);
      continue;
    }
    r.fields.emplace(std::string(word.substr(0, eq)), std::string(word.substr(eq + 1)));
  }
  return r;
}

std::string field(std::string_view name, std::uint64_t value) {
  return " " + std::string(name) + "=" + std::to_string(value);
}
std::string field_signed(std::string_view name, std::int64_t value) {
  // Stored as its two's complement: the reader casts back.
  return field(name, static_cast<std::uint64_t>(value));
}

// The names of a backend row's numeric fields and where they are, shared by both directions so
// that a field written is a field read.
template <typename Row, typename Visit>
void backend_numbers(Row& row, Visit&& visit) {
  visit("state", row.state);
  visit("weight", row.weight);
  visit("config_epoch", row.config_epoch);
  visit("sockaddr_len", row.sockaddr_len);
  visit("healthy", row.healthy);
  visit("check_streak", row.check_streak);
  visit("last_result", row.last_result);
  visit("last_check_ms", row.last_check_ms);
  visit("passive_fail_streak", row.passive_fail_streak);
  visit("transitions", row.transitions);
  visit("maxconn", row.maxconn);
  visit("slowstart_ms", row.slowstart_ms);
  visit("up_since_ms", row.up_since_ms);
  visit("evacuate_start_ms", row.evacuate_start_ms);
  visit("evacuate_end_ms", row.evacuate_end_ms);
  visit("admin", row.admin);
  visit("tls", row.tls);
}

template <typename T>
std::uint64_t as_number(const std::atomic<T>& a) {
  return static_cast<std::uint64_t>(a.load(relaxed));
}

template <typename T>
void store_number(std::atomic<T>& a, std::uint64_t v) {
  a.store(static_cast<T>(v), relaxed);
}

// Whether `name` is a numeric field this reader takes (of any record kind).
bool known_number(std::string_view name) {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out{"layout", "generation", "workers_per_generation",
                                 "backend_epoch", "round_robin_next", "rebalance_plans", "pid",
                                 "active", "total", "bytes_in", "bytes_out", "failures", "shed",
                                 "evacuated", "key_count", "keys_rotated_ms"};
    backend_row row{};
    backend_numbers(row, [&](std::string_view n, auto&) { out.emplace_back(n); });
    return out;
  }();
  return std::find(names.begin(), names.end(), name) != names.end();
}

}  // namespace

std::string export_table(const table& t, const export_names& names) {
  const table_header& h = t.header;
  std::string out = std::string(format_name) + " " + std::to_string(export_version) + "\n";
  out += "instance name=" + hex_text(h.name, name_chars) + " listen=" +
         hex_text(h.listen, address_chars) + field("layout", h.version) + " segment=" +
         hex(names.segment.data(), names.segment.size()) + " successor=" +
         hex(names.successor.data(), names.successor.size()) + "\n";
  out += "header" + field("generation", h.current_generation.load(relaxed)) +
         field("workers_per_generation", h.workers_per_generation.load(relaxed)) +
         field("backend_epoch", h.backend_epoch.load(relaxed)) +
         field("round_robin_next", h.round_robin_next.load(relaxed)) +
         field("rebalance_plans", h.rebalance_plans.load(relaxed)) + "\n";
  for (std::size_t i = 0; i < worker_rows_in_use(t); ++i) {
    const worker_row& w = t.workers[i];
    if (w.state.load(relaxed) == worker_state::empty) continue;
    out += "worker " + std::to_string(i) + field("pid", static_cast<std::uint32_t>(w.pid.load(relaxed))) +
           field("generation", w.generation.load(relaxed)) + "\n";
  }
  for (std::size_t b = 0; b < backend_rows_in_use(t); ++b) {
    const backend_row& row = t.backends[b];
    if (row.state.load(relaxed) == backend_state::empty) continue;
    std::string line = "backend " + std::to_string(b);
    backend_numbers(row, [&](std::string_view name, const auto& value) {
      if constexpr (std::is_signed_v<decltype(value.load())>) {
        line += field_signed(name, value.load(relaxed));
      } else {
        line += field(name, as_number(value));
      }
    });
    const backend_totals sums = sum_backend(t, b);
    line += field("active", sums.active) + field("total", sums.total) +
            field("bytes_in", sums.bytes_in) + field("bytes_out", sums.bytes_out) +
            field("failures", sums.failures) + field("shed", sums.shed) +
            field("evacuated", sums.evacuated);
    line += " address=" + hex_text(row.address, address_chars) +
            " sockaddr=" + hex(row.sockaddr_bytes, sizeof row.sockaddr_bytes) +
            " last_error=" + hex(read_last_error(row).data(), read_last_error(row).size()) +
            " tls_sni=" + hex_text(row.tls_sni, sizeof row.tls_sni) +
            " tls_ca=" + hex_text(row.tls_ca, sizeof row.tls_ca);
    out += line + "\n";
  }
  // The ticket keys under their seqlock: retried while the master rewrites them (it is the
  // caller here, so in practice never).
  const tls_section& tls = t.tls;
  std::string keys;
  std::uint32_t seq = 0;
  do {
    seq = tls.keys_seq.load(std::memory_order_acquire);
    keys = "tls" + field("key_count", tls.key_count.load(relaxed)) +
           field_signed("keys_rotated_ms", tls.keys_rotated_ms.load(relaxed));
    for (std::size_t k = 0; k < 2; ++k) {
      std::uint64_t words[ticket_key_bytes / 8];
      for (std::size_t i = 0; i < ticket_key_bytes / 8; ++i) {
        words[i] = tls.keys[k].words[i].load(relaxed);
      }
      keys += " key" + std::to_string(k) + "=" + hex(words, sizeof words);
    }
    std::atomic_thread_fence(std::memory_order_acquire);
  } while ((seq & 1u) != 0 || tls.keys_seq.load(relaxed) != seq);
  out += keys + "\n";
  return out;
}

export_header read_export_header(std::string_view text) {
  export_header out;
  std::size_t at = 0;
  while (at < text.size()) {
    std::size_t end = text.find('\n', at);
    if (end == std::string_view::npos) end = text.size();
    const record r = parse_line(text.substr(at, end - at));
    at = end + 1;
    if (r.kind != "instance") continue;
    std::string why;
    if (!r.text("name", out.instance, why) || !r.text("segment", out.names.segment, why) ||
        !r.text("successor", out.names.successor, why)) {
      return {};
    }
    break;
  }
  return out;
}

std::string import_table(std::string_view text, table& t, export_names& names) {
  std::vector<record> records;
  std::size_t at = 0;
  while (at < text.size()) {
    std::size_t end = text.find('\n', at);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = text.substr(at, end - at);
    at = end + 1;
    if (!line.empty()) records.push_back(parse_line(line));
  }
  const std::string expected = std::string(format_name);
  if (records.empty() || records.front().kind != expected) {
    return "not a wslb table export";
  }
  if (records.front().row != export_version) {
    return "export format " + std::to_string(records.front().row) + ", this wslb reads " +
           std::to_string(export_version);
  }
  std::string why;
  // Checked first, so that a bad export changes nothing.
  for (const record& r : records) {
    if ((r.kind == "worker" && r.row >= max_worker_slots) ||
        (r.kind == "backend" && r.row >= max_backends)) {
      return r.kind + " row " + std::to_string(r.row) + " is beyond this layout's " +
             std::to_string(r.kind == "worker" ? max_worker_slots : max_backends);
    }
    for (const auto& [name, value] : r.fields) {
      std::uint64_t n = 0;
      std::string s;
      // A field this reader does not know is skipped (a newer writer's), never judged.
      const bool is_text = name == "name" || name == "listen" || name == "segment" ||
                           name == "successor" || name == "address" || name == "sockaddr" ||
                           name == "last_error" || name == "key0" || name == "key1" ||
                           name == "tls_sni" || name == "tls_ca";
      if (is_text && !r.text(name, s, why)) return why;
      if (!is_text && known_number(name) && !r.number(name, n, why)) return why;
    }
  }
  table_header& h = t.header;
  std::uint32_t slot_high_water = 0, backend_high_water = 0;
  for (const record& r : records) {
    std::uint64_t n = 0;
    std::string s;
    if (r.kind == "instance") {
      r.text("name", s, why);
      copy_fixed(h.name, name_chars, s);
      r.text("listen", s, why);
      copy_fixed(h.listen, address_chars, s);
      r.text("segment", names.segment, why);
      r.text("successor", names.successor, why);
    } else if (r.kind == "header") {
      r.number("generation", n, why);
      h.current_generation.store(static_cast<std::uint32_t>(n), relaxed);
      r.number("workers_per_generation", n, why);
      h.workers_per_generation.store(static_cast<std::uint32_t>(n), relaxed);
      r.number("backend_epoch", n, why);
      h.backend_epoch.store(static_cast<std::uint32_t>(n), relaxed);
      r.number("round_robin_next", n, why);
      h.round_robin_next.store(n, relaxed);
      r.number("rebalance_plans", n, why);
      h.rebalance_plans.store(static_cast<std::uint32_t>(n), relaxed);
    } else if (r.kind == "worker") {
      worker_row& w = t.workers[r.row];
      r.number("pid", n, why);
      w.pid.store(static_cast<std::int32_t>(n), relaxed);
      r.number("generation", n, why);
      w.generation.store(static_cast<std::uint32_t>(n), relaxed);
      w.state.store(worker_state::predecessor, relaxed);
      slot_high_water = std::max(slot_high_water, static_cast<std::uint32_t>(r.row + 1));
    } else if (r.kind == "backend") {
      backend_row& row = t.backends[r.row];
      backend_numbers(row, [&](std::string_view name, auto& value) {
        r.number(name, n, why);
        store_number(value, n);
      });
      r.text("address", s, why);
      copy_fixed(row.address, address_chars, s);
      r.text("sockaddr", s, why);
      std::memcpy(row.sockaddr_bytes, s.data(), std::min(s.size(), sizeof row.sockaddr_bytes));
      r.text("last_error", s, why);
      write_last_error(row, s);
      r.text("tls_sni", s, why);
      copy_fixed(row.tls_sni, sizeof row.tls_sni, s);
      r.text("tls_ca", s, why);
      copy_fixed(row.tls_ca, sizeof row.tls_ca, s);
      // Totals go on from the predecessor's (what its workers count after the export is not
      // carried); its live connections are inherited until they are handed over.
      const std::pair<const char*, std::atomic<std::uint64_t>*> totals[] = {
          {"total", &row.retired_total},         {"bytes_in", &row.retired_bytes_in},
          {"bytes_out", &row.retired_bytes_out}, {"failures", &row.retired_failures},
          {"shed", &row.retired_shed},           {"evacuated", &row.retired_evacuated}};
      for (const auto& [name, counter] : totals) {
        r.number(name, n, why);
        counter->store(n, relaxed);
      }
      r.number("active", n, why);
      row.inherited_active.store(row.state.load(relaxed) == backend_state::active ? n : 0,
                                 relaxed);
      backend_high_water = std::max(backend_high_water, static_cast<std::uint32_t>(r.row + 1));
    } else if (r.kind == "tls") {
      tls_section& tls = t.tls;
      r.number("key_count", n, why);
      tls.key_count.store(static_cast<std::uint32_t>(std::min<std::uint64_t>(n, 2)), relaxed);
      r.number("keys_rotated_ms", n, why);
      tls.keys_rotated_ms.store(static_cast<std::int64_t>(n), relaxed);
      for (std::size_t k = 0; k < 2; ++k) {
        r.text("key" + std::to_string(k), s, why);
        std::uint64_t words[ticket_key_bytes / 8] = {};
        std::memcpy(words, s.data(), std::min(s.size(), sizeof words));
        for (std::size_t i = 0; i < ticket_key_bytes / 8; ++i) {
          tls.keys[k].words[i].store(words[i], relaxed);
        }
      }
    }
  }
  h.slot_high_water.store(slot_high_water, std::memory_order_release);
  h.backend_high_water.store(backend_high_water, std::memory_order_release);
  return {};
}

}  // namespace wslb::shm
