#include "cluster/snapshot.h"

#include <charconv>
#include <cstdio>

#include "shm/table_ops.h"

namespace wslb::cluster {

namespace {

constexpr std::string_view magic_line = "wslb-snapshot 1";

template <typename Int>
bool parse_int(std::string_view text, Int& out, int base = 10) {
  if (text.empty()) return false;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out, base);
  return ec == std::errc() && end == text.data() + text.size();
}

// Splits "key value" at the first space.
std::pair<std::string_view, std::string_view> split_field(std::string_view line) {
  const std::size_t space = line.find(' ');
  if (space == std::string_view::npos) return {line, {}};
  return {line.substr(0, space), line.substr(space + 1)};
}

}  // namespace

std::uint64_t node_snapshot::total() const {
  std::uint64_t sum = 0;
  for (const auto& [address, n] : counts) sum += n;
  return sum;
}

std::string encode(const node_snapshot& s) {
  char boot[17];
  std::snprintf(boot, sizeof boot, "%016llx", static_cast<unsigned long long>(s.boot));
  std::string out(magic_line);
  out += "\nnode " + s.node_id + "\nboot " + boot + "\nseq " + std::to_string(s.seq) + "\nms " +
         std::to_string(s.published_ms) + "\n";
  for (const auto& [address, n] : s.counts) out += "backend " + address + " " + std::to_string(n) + "\n";
  return out;
}

std::optional<node_snapshot> decode(std::string_view text) {
  node_snapshot s;
  bool have_magic = false, have_node = false, have_boot = false, have_seq = false;
  while (!text.empty()) {
    const std::size_t eol = text.find('\n');
    const std::string_view line = text.substr(0, eol);
    text = eol == std::string_view::npos ? std::string_view() : text.substr(eol + 1);
    if (!have_magic) {
      if (line != magic_line) return std::nullopt;
      have_magic = true;
      continue;
    }
    const auto [key, value] = split_field(line);
    if (key == "node") {
      if (value.empty() || value.size() >= shm::name_chars) return std::nullopt;
      s.node_id = std::string(value);
      have_node = true;
    } else if (key == "boot") {
      have_boot = parse_int(value, s.boot, 16);
      if (!have_boot) return std::nullopt;
    } else if (key == "seq") {
      have_seq = parse_int(value, s.seq);
      if (!have_seq) return std::nullopt;
    } else if (key == "ms") {
      if (!parse_int(value, s.published_ms)) return std::nullopt;
    } else if (key == "backend") {
      const std::size_t space = value.rfind(' ');
      if (space == std::string_view::npos || space == 0) return std::nullopt;
      std::uint64_t n = 0;
      if (!parse_int(value.substr(space + 1), n)) return std::nullopt;
      s.counts.emplace_back(std::string(value.substr(0, space)), n);
    } else if (!line.empty()) {
      return std::nullopt;
    }
  }
  if (!(have_magic && have_node && have_boot && have_seq)) return std::nullopt;
  return s;
}

std::vector<std::pair<std::string, std::uint64_t>> local_counts(const shm::table& t) {
  std::vector<std::pair<std::string, std::uint64_t>> out;
  const std::size_t rows = shm::backend_rows_in_use(t);
  for (std::size_t b = 0; b < rows; ++b) {
    const shm::backend_row& row = t.backends[b];
    if (row.state.load(std::memory_order_acquire) == shm::backend_state::empty) continue;
    const std::string address(shm::address_of(row));
    const std::uint64_t n = shm::sum_active(t, b);
    bool merged = false;
    for (auto& [known, count] : out) {
      if (known == address) {
        count += n;
        merged = true;
      }
    }
    if (!merged) out.emplace_back(address, n);
  }
  return out;
}

}  // namespace wslb::cluster
