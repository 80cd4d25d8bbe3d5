#include "worker/shedding.h"

#include <algorithm>
#include <random>

#include "common/log.h"
#include "shm/table_ops.h"
#include "worker/connection_stats.h"
#include "worker/row_counters.h"
#include "worker/session.h"

namespace wslb::worker {

namespace {

constexpr std::uint64_t tick_ms = 100;
constexpr std::uint64_t max_owed_ms = 2 * tick_ms;
constexpr auto relaxed = std::memory_order_relaxed;

// Seeded on first use, after the fork: each worker draws its own victims.
std::mt19937_64& random_source() {
  static std::mt19937_64 rng{std::random_device{}()};
  return rng;
}

struct victim_rule {
  std::size_t index;       // configured backend
  std::uint32_t min_age_ms;
  bool moved_keys_only;    // sticky modes: only a key the ring now maps elsewhere
};

bool may_shed(worker_context& ctx, const session* s, const victim_rule& rule, std::uint64_t now_ns) {
  // Only tunnels (WebSocket, tcp): a connection between HTTP requests is short-lived anyway.
  // One the affinity cookie placed would come straight back to the same backend.
  if (s->dead || s->graceful || s->at != phase::tunnel || s->pinned ||
      s->backend_index != rule.index) {
    return false;
  }
  if (now_ns - s->accepted_ns < std::uint64_t{rule.min_age_ms} * 1'000'000) return false;
  if (rule.moved_keys_only && s->has_sticky_key) {
    // Where the serving configuration sends the key now, not this worker's own (an older
    // generation's does not have the backends a reload added). Nowhere to go: stay.
    const std::optional<std::size_t> row = ctx.shedding.serving.row_for(ctx.table, s->sticky_key);
    return row && *row != ctx.cfg.backends[rule.index].row;
  }
  return true;
}

// Up to `want` sessions chosen uniformly at random among those the rule allows (reservoir
// sampling: one walk over the worker's sessions). Returns how many were chosen.
std::size_t choose_victims(worker_context& ctx, const victim_rule& rule, std::size_t want,
                           std::vector<session*>& out) {
  out.clear();
  if (want == 0) return 0;
  const std::uint64_t now_ns = uv_hrtime();
  std::uint64_t seen = 0;
  for (session* s = ctx.sessions; s != nullptr; s = s->next) {
    if (!may_shed(ctx, s, rule, now_ns)) continue;
    ++seen;
    if (out.size() < want) {
      out.push_back(s);
    } else {
      const std::uint64_t j = std::uniform_int_distribution<std::uint64_t>(0, seen - 1)(random_source());
      if (j < want) out[j] = s;
    }
  }
  return out.size();
}

void close_for(worker_context& ctx, session* s, std::atomic<std::uint64_t>& counter,
               shm::close_cause cause) {
  counter_add(counter, 1);
  note_cause(s, cause);
  s->client_close_code = ctx.cfg.shaping.close_code;
  close_session_gracefully(s);
}

// `backend evacuate`: this worker's connections to the backend closed along a straight line
// from the start to the end; at the end whatever is left (connecting ones too) goes.
void evacuate(worker_context& ctx, std::size_t index, shed_state& st, std::int64_t now,
              std::vector<session*>& scratch) {
  const std::size_t row = ctx.cfg.backends[index].row;
  const shm::backend_row& b = ctx.table.backends[row];
  const std::int64_t start = b.evacuate_start_ms.load(relaxed);
  const std::int64_t end = b.evacuate_end_ms.load(relaxed);
  if (end == 0) {
    st.evacuation_seen = 0;
    return;
  }
  shm::backend_counters& mine = ctx.row.backends[row];
  if (st.evacuation_seen != start) {
    st.evacuation_seen = start;
    st.evacuation_total = mine.active.load(relaxed);
    st.evacuation_done = 0;
    log_line(ctx.who, "evacuating %s: %llu connections here until the deadline",
             ctx.backend_names[index].c_str(),
             static_cast<unsigned long long>(st.evacuation_total));
  }
  if (now >= end) {
    for (session* s = ctx.sessions; s != nullptr;) {
      session* next = s->next;
      if (!s->dead && !s->graceful && s->backend_index == index) {
        if (s->relaying()) close_for(ctx, s, mine.evacuated, shm::close_cause::evacuate);
        else close_session(s);
      }
      s = next;
    }
    return;
  }
  const std::uint64_t span = static_cast<std::uint64_t>(std::max<std::int64_t>(end - start, 1));
  const std::uint64_t gone = static_cast<std::uint64_t>(std::clamp<std::int64_t>(now - start, 0, end - start));
  // Rounded down: a worker is never ahead of its line (the end closes what is left).
  const std::uint64_t due = st.evacuation_total * gone / span;
  if (due <= st.evacuation_done) return;
  const victim_rule rule{index, 0, false};
  choose_victims(ctx, rule, due - st.evacuation_done, scratch);
  for (session* s : scratch) close_for(ctx, s, mine.evacuated, shm::close_cause::evacuate);
  // Owed closes with nobody left to close are not carried: the line is this worker's count.
  st.evacuation_done = due;
}

// Rebalance: the backend's shed rate, this worker's part of it in proportion to its share of
// the backend's live connections, accumulated in thousandths and paid in whole closes.
void rebalance(worker_context& ctx, std::size_t index, shed_state& st, std::uint64_t elapsed_ms,
               std::vector<session*>& scratch) {
  const std::size_t row = ctx.cfg.backends[index].row;
  const std::uint64_t rate_milli = ctx.table.backends[row].shed_rate_milli.load(relaxed);
  if (rate_milli == 0) {
    st.budget_milli = 0;
    return;
  }
  shm::backend_counters& mine = ctx.row.backends[row];
  const std::uint64_t here = mine.active.load(relaxed);
  const std::uint64_t everywhere = shm::sum_active(ctx.table, row);
  if (here == 0 || everywhere == 0) return;
  // A worker the kernel did not run for a while (a loaded machine, a SIGSTOP) does not pay
  // for the time it missed: added to the other workers' steady pace, closes owed over a
  // second or two and paid at once would break the instance-wide cap in that second. So a
  // tick owes for at most two ticks, and any one second sees at most 1.2 x this worker's pace
  // (the plan allows for that, see rebalance_plan.h). The plan then ends a little later.
  const std::uint64_t paid_ms = std::min(elapsed_ms, max_owed_ms);
  // connections/s x 1000 x ms / 1000 = thousandths of a connection.
  const std::uint64_t owed = rate_milli * here / everywhere * paid_ms / 1000;
  // At most a tick and a bit owed at once: no burst after a stretch without victims.
  st.budget_milli = std::min(st.budget_milli + owed, std::max<std::uint64_t>(owed, 1000) + 999);
  const std::size_t want = st.budget_milli / 1000;
  if (want == 0) return;
  const victim_rule rule{index, ctx.cfg.shaping.min_age_ms, ctx.picker.sticky()};
  const std::size_t got = choose_victims(ctx, rule, want, scratch);
  for (session* s : scratch) close_for(ctx, s, mine.shed, shm::close_cause::rebalance);
  st.budget_milli -= got * 1000;
  if (got < want) st.budget_milli = std::min<std::uint64_t>(st.budget_milli, 999);
}

void on_shed_tick(uv_timer_t* t) {
  worker_context& ctx = worker_context::of(t->loop);
  const std::uint64_t now = uv_now(&ctx.loop);
  const std::uint64_t elapsed = now - ctx.shedding.last_tick_ms;
  ctx.shedding.last_tick_ms = now;
  shed_tick(ctx, elapsed, unix_ms());
}

}  // namespace

void start_shedding(worker_context& ctx) {
  uv_timer_init(&ctx.loop, &ctx.shedding.timer);
  ctx.shedding.open = true;
  ctx.shedding.last_tick_ms = uv_now(&ctx.loop);
  uv_timer_start(&ctx.shedding.timer, on_shed_tick, tick_ms, tick_ms);
}

void stop_shedding(worker_context& ctx) {
  if (!ctx.shedding.open) return;
  ctx.shedding.open = false;
  uv_timer_stop(&ctx.shedding.timer);
  uv_close(reinterpret_cast<uv_handle_t*>(&ctx.shedding.timer), nullptr);
}

void shed_tick(worker_context& ctx, std::uint64_t elapsed_ms, std::int64_t now_unix_ms) {
  if (ctx.phase == worker_phase::stopping) return;
  static thread_local std::vector<session*> scratch;
  for (std::size_t i = 0; i < ctx.cfg.backends.size(); ++i) {
    shed_state& st = ctx.shedding.backends[i];
    evacuate(ctx, i, st, now_unix_ms, scratch);
    rebalance(ctx, i, st, elapsed_ms, scratch);
  }
}

}  // namespace wslb::worker
