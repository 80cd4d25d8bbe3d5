#include "cli/shaping_view.h"

#include "common/config.h"

namespace wslb::cli {

namespace {

std::string num(std::uint64_t v) { return std::to_string(v); }
std::string num(std::int64_t v) { return std::to_string(v); }

// Percent of the slow-start ramp done, or -1 when the backend is not ramping.
int ramp_pct(const shm::backend_row& row, std::int64_t now) {
  const std::int64_t since = row.up_since_ms.load();
  const std::int64_t span = row.slowstart_ms.load();
  if (span == 0 || since <= 0 || now >= since + span) return -1;
  return static_cast<int>((now > since ? now - since : 0) * 100 / span);
}

bool evacuating(const shm::backend_row& row) { return row.evacuate_end_ms.load() != 0; }

std::int64_t left(std::int64_t deadline, std::int64_t now) { return deadline > now ? deadline - now : 0; }

const char* mode_name(const shm::table& t) {
  return to_string(static_cast<rebalance_mode>(t.header.rebalance_mode.load()));
}

// Closes with cause rebalance since the current plan began.
std::uint64_t shed_in_plan(const shm::backend_row& row, const shm::backend_totals& sums) {
  const std::uint64_t base = row.rebalance_shed_base.load();
  return sums.shed > base ? sums.shed - base : 0;
}

}  // namespace

std::string shaping_json(const shm::backend_row& row, const shm::backend_totals& sums,
                         std::int64_t now) {
  std::string out = ",\"slowstart_ms\":";
  out += row.slowstart_ms.load() ? num(std::uint64_t{row.slowstart_ms.load()}) : "null";
  if (const int pct = ramp_pct(row, now); pct >= 0) out += ",\"ramp_pct\":" + std::to_string(pct);
  out += ",\"closed\":{\"rebalance\":" + num(sums.shed) + ",\"evacuate\":" + num(sums.evacuated) +
         "},\"evacuation\":";
  if (evacuating(row)) {
    out += "{\"remain\":" + num(sums.active) + ",\"ends_in_ms\":" +
           num(left(row.evacuate_end_ms.load(), now)) + "}";
  } else {
    out += "null";
  }
  out += ",\"rebalance\":";
  if (row.rebalance_surplus.load() != 0 || row.shed_rate_milli.load() != 0) {
    out += "{\"target\":" + num(row.rebalance_target.load()) + ",\"surplus\":" +
           num(row.rebalance_surplus.load()) + ",\"shed\":" + num(shed_in_plan(row, sums)) +
           ",\"rate_per_s\":" + num(std::uint64_t{row.shed_rate_milli.load()} / 1000) + "}";
  } else {
    out += "null";
  }
  return out;
}

std::string rebalance_json(const shm::table& t, std::int64_t now) {
  const auto& h = t.header;
  const bool running = h.rebalance_running.load() != 0;
  std::string out = ",\"rebalance\":{\"mode\":\"" + std::string(mode_name(t)) +
                    "\",\"running\":" + (running ? "true" : "false") + ",\"plans\":" +
                    num(std::uint64_t{h.rebalance_plans.load()});
  if (running) {
    out += ",\"expected_ms\":" +
           num(h.rebalance_expected_end_ms.load() - h.rebalance_started_ms.load()) +
           ",\"running_for_ms\":" + num(now - h.rebalance_started_ms.load()) +
           ",\"expected_left_ms\":" + num(left(h.rebalance_expected_end_ms.load(), now));
  }
  return out + "}";
}

std::string shaping_text(const shm::backend_row& row, const shm::backend_totals& sums,
                         std::int64_t now) {
  std::string out;
  if (const std::uint32_t m = row.maxconn.load(); m != 0) out += "  maxconn " + num(std::uint64_t{m});
  if (const int pct = ramp_pct(row, now); pct >= 0) {
    out += "  slow start " + std::to_string(pct) + "%";
  }
  if (evacuating(row)) {
    out += "  EVACUATING: " + num(sums.active) + " remain, ends in " +
           num(left(row.evacuate_end_ms.load(), now) / 1000) + " s";
  }
  if (row.rebalance_surplus.load() != 0 || row.shed_rate_milli.load() != 0) {
    out += "  rebalance: target " + num(row.rebalance_target.load()) + ", shed " +
           num(shed_in_plan(row, sums)) + "/" + num(row.rebalance_surplus.load());
  }
  if (sums.shed != 0 || sums.evacuated != 0) {
    out += "  closed: rebalance " + num(sums.shed) + ", evacuate " + num(sums.evacuated);
  }
  return out.empty() ? out : "    shaping:" + out + "\n";
}

std::string rebalance_text(const shm::table& t, std::int64_t now) {
  const auto& h = t.header;
  std::string out = "REBALANCE " + std::string(mode_name(t));
  if (h.rebalance_running.load() != 0) {
    out += ", running for " + num((now - h.rebalance_started_ms.load()) / 1000) +
           " s, expected to end in " + num(left(h.rebalance_expected_end_ms.load(), now) / 1000) +
           " s";
  } else {
    out += ", idle";
  }
  out += " (" + num(std::uint64_t{h.rebalance_plans.load()}) + " plans run)";
  const std::uint64_t queued = shm::sum_queued(t);
  if (queued != 0) out += "; " + num(queued) + " clients queued for a place under maxconn";
  return out + "\n";
}

}  // namespace wslb::cli
