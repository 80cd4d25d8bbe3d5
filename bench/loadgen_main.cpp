// wslb-loadgen: WebSocket load generator (echo, hold, churn) for bench/run. Forks one process
// per share of the connections (each process may open at most 20,000 descriptors), starts them
// together, adds up what they measured and prints one JSON line and one line for people.
#include <CLI/CLI.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "bench/loadgen.h"
#include "common/exit_codes.h"
#include "common/log.h"
#include "common/parse.h"

namespace {

using namespace wslb;
using namespace wslb::bench;

struct child {
  pid_t pid = -1;
  int report_fd = -1;  // read end
  int go_fd = -1;      // write end
  bool opened = false;
  bool reported = false;
  std::size_t got = 0;  // bytes of the result read so far (after the 'R')
  bool in_result = false;
  run_result result;
};

std::uint64_t descriptor_limit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return 1024;
  if (lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
  return lim.rlim_cur;
}

// Reads what a child sent: 'O' once opened, then 'R' and the run_result bytes.
bool drain_child(child& c) {
  char buf[4096];
  const ssize_t n = read(c.report_fd, buf, sizeof buf);
  if (n <= 0) return false;
  for (ssize_t i = 0; i < n; ++i) {
    if (c.in_result) {
      const std::size_t take = std::min<std::size_t>(static_cast<std::size_t>(n - i), sizeof(run_result) - c.got);
      std::memcpy(reinterpret_cast<char*>(&c.result) + c.got, buf + i, take);
      c.got += take;
      i += static_cast<ssize_t>(take) - 1;
      if (c.got == sizeof(run_result)) {
        c.reported = true;
        c.in_result = false;
      }
    } else if (buf[i] == 'O') {
      c.opened = true;
    } else if (buf[i] == 'R') {
      c.in_result = true;
    }
  }
  return true;
}

void write_file(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  if (FILE* f = std::fopen(tmp.c_str(), "w")) {
    std::fputs(text.c_str(), f);
    std::fclose(f);
    std::rename(tmp.c_str(), path.c_str());
  }
}

const char* mode_name(load_mode m) {
  switch (m) {
    case load_mode::echo: return "echo";
    case load_mode::hold: return "hold";
    case load_mode::churn: return "churn";
  }
  return "?";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"wslb-loadgen: WebSocket load generator (echo, hold, churn)"};
  loadgen_options o;
  std::string mode_text = "echo", size_text = "64";
  std::vector<std::string> target_texts, source_texts;
  unsigned sources_count = 0, processes = 0;
  std::string opened_file, label;
  app.add_option("--mode", mode_text, "echo | hold | churn")
      ->check(CLI::IsMember({"echo", "hold", "churn"}));
  app.add_option("--target", target_texts, "HOST:PORT to connect to (repeatable)")->required();
  app.add_option("--source", source_texts, "local address to bind before connecting (repeatable)");
  app.add_option("--sources", sources_count, "shorthand: bind to 127.0.0.1 .. 127.0.0.N")
      ->check(CLI::Range(1u, 254u));
  app.add_option("--connections,-n", o.connections, "echo, hold: connections in all")
      ->check(CLI::Range(1u, 10'000'000u));
  app.add_option("--concurrency,-c", o.concurrency, "churn: cycles in flight in all")
      ->check(CLI::Range(1u, 1'000'000u));
  app.add_option("--size,-s", size_text, "message payload bytes (64, 16k, 1m)");
  app.add_option("--duration,-d", o.duration_s, "seconds measured (echo, churn) or held (hold)")
      ->check(CLI::Range(0.0, 86400.0));
  app.add_option("--warmup", o.warmup_s, "echo: seconds run before measuring")
      ->check(CLI::Range(0.0, 3600.0));
  app.add_option("--timeout", o.timeout_s, "seconds allowed for one open or one round trip")
      ->check(CLI::Range(0.1, 3600.0));
  app.add_option("--max-pending", o.max_pending, "connections being opened at once, per process")
      ->check(CLI::Range(1u, 100'000u));
  app.add_option("--processes", processes, "processes to spread over (0: enough for the fd limit)")
      ->check(CLI::Range(0u, 256u));
  app.add_option("--path", o.path, "request target of the handshake");
  app.add_option("--host", o.host, "Host header of the handshake");
  app.add_option("--opened-file", opened_file,
                 "written (JSON) once every connection is open: hold measures memory then");
  app.add_option("--label", label, "copied into the JSON result");
  app.add_flag("--tls", o.tls, "wss://: TLS 1.3 under every connection");
  app.add_flag("--tls-resume", o.tls_resume,
               "with --tls: resume a saved session on every connection after the first");
  app.add_option("--sni", o.tls_server_name, "with --tls: the server name sent");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? exit_code::ok : exit_code::usage;
  }
  o.mode = mode_text == "hold" ? load_mode::hold : mode_text == "churn" ? load_mode::churn : load_mode::echo;
  std::string error;
  for (const auto& t : target_texts) {
    endpoint e;
    if (!parse_endpoint(t, e, error)) {
      std::fprintf(stderr, "wslb-loadgen: --target: %s\n", error.c_str());
      return exit_code::usage;
    }
    o.targets.push_back(e);
  }
  for (unsigned i = 1; i <= sources_count; ++i) source_texts.push_back("127.0.0." + std::to_string(i) + ":0");
  for (auto t : source_texts) {
    if (t.find(':') == std::string::npos || t.back() == ']') t += ":0";
    endpoint e;
    if (!parse_endpoint(t, e, error, true)) {
      std::fprintf(stderr, "wslb-loadgen: --source: %s\n", error.c_str());
      return exit_code::usage;
    }
    o.sources.push_back(e);
  }
  std::uint32_t size = 0;
  if (!parse_size(size_text, size, error)) {
    std::fprintf(stderr, "wslb-loadgen: --size: %s\n", error.c_str());
    return exit_code::usage;
  }
  o.size = size;

  const std::uint64_t limit = descriptor_limit();
  const std::uint64_t per_process = limit > 200 ? limit - 100 : 100;
  const std::uint64_t wanted = o.mode == load_mode::churn ? o.concurrency : o.connections;
  const unsigned needed = static_cast<unsigned>((wanted + per_process - 1) / per_process);
  if (processes == 0) processes = std::max(1u, needed);
  if (processes < needed) {
    std::fprintf(stderr, "wslb-loadgen: %llu connections need at least %u processes at %llu descriptors each\n",
                 static_cast<unsigned long long>(wanted), needed, static_cast<unsigned long long>(limit));
    return exit_code::usage;
  }
  processes = static_cast<unsigned>(std::min<std::uint64_t>(processes, std::max<std::uint64_t>(wanted, 1)));

  signal(SIGPIPE, SIG_IGN);
  std::vector<child> children(processes);
  for (unsigned k = 0; k < processes; ++k) {
    int report[2], go[2];
    if (pipe2(report, O_CLOEXEC) != 0 || pipe2(go, O_CLOEXEC) != 0) {
      std::perror("wslb-loadgen: pipe");
      return exit_code::failure;
    }
    loadgen_options mine = o;
    const auto share = [&](unsigned total) { return total / processes + (k < total % processes ? 1u : 0u); };
    mine.connections = share(o.connections);
    mine.concurrency = std::max(1u, share(o.concurrency));
    mine.first_index = k;
    mine.index_stride = processes;
    const pid_t pid = fork();
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      for (unsigned j = 0; j < k; ++j) {
        ::close(children[j].report_fd);
        ::close(children[j].go_fd);
      }
      ::close(report[0]);
      ::close(go[1]);
      const run_result r = run_load(mine, loop_links{report[1], go[0]});
      const char tag = 'R';
      [[maybe_unused]] auto w1 = write(report[1], &tag, 1);
      std::size_t off = 0;
      while (off < sizeof r) {
        const auto w = write(report[1], reinterpret_cast<const char*>(&r) + off, sizeof r - off);
        if (w <= 0) break;
        off += static_cast<std::size_t>(w);
      }
      _exit(0);
    }
    ::close(report[1]);
    ::close(go[0]);
    children[k].pid = pid;
    children[k].report_fd = report[0];
    children[k].go_fd = go[1];
  }

  // Every process opens its share, then all start the measured phase together.
  const double open_budget = o.timeout_s + static_cast<double>(wanted) / processes / 2000.0 + 5;
  const double run_budget = o.warmup_s + o.duration_s + 2 * o.timeout_s + 30;
  const auto t0 = std::chrono::steady_clock::now();
  const auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  bool go_sent = false, all_opened_seen = false;
  double go_at = -1;
  bool complete = true;
  while (true) {
    std::vector<pollfd> fds;
    std::vector<std::size_t> owner;
    for (std::size_t k = 0; k < children.size(); ++k) {
      if (children[k].report_fd >= 0 && !children[k].reported) {
        fds.push_back({children[k].report_fd, POLLIN, 0});
        owner.push_back(k);
      }
    }
    if (fds.empty()) break;
    poll(fds.data(), fds.size(), 20);
    for (std::size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      auto& c = children[owner[i]];
      if (!drain_child(c)) {
        ::close(c.report_fd);
        c.report_fd = -1;
        if (!c.reported) complete = false;
      }
    }
    bool all_opened = true;
    for (const auto& c : children) all_opened = all_opened && (c.opened || c.report_fd < 0);
    if (all_opened && !all_opened_seen) {
      all_opened_seen = true;
      go_at = elapsed() + (o.mode == load_mode::hold ? o.duration_s : 0);
      if (!opened_file.empty()) {
        // The children have not reported counts yet; the file says when, the result says how many.
        write_file(opened_file, "{\"opened_after_s\":" + std::to_string(elapsed()) + "}\n");
      }
    }
    if (!go_sent && ((all_opened_seen && elapsed() >= go_at) || elapsed() > open_budget + (o.mode == load_mode::hold ? o.duration_s : 0))) {
      go_sent = true;
      for (auto& c : children) {
        const char g = 'G';
        [[maybe_unused]] auto w = write(c.go_fd, &g, 1);
      }
    }
    if (elapsed() > open_budget + o.duration_s + run_budget) {
      complete = false;
      for (auto& c : children)
        if (!c.reported) kill(c.pid, SIGKILL);
      break;
    }
  }
  for (auto& c : children) {
    if (c.go_fd >= 0) ::close(c.go_fd);
    if (c.report_fd >= 0) ::close(c.report_fd);
    waitpid(c.pid, nullptr, 0);
  }

  run_result total;
  for (const auto& c : children)
    if (c.reported) total.merge(c.result);
  else complete = false;

  const double secs = total.measured_s > 0 ? total.measured_s : 1;
  const double msgs_per_s = static_cast<double>(total.messages) / secs;
  const double mb_per_s = static_cast<double>(total.bytes) / secs / 1e6;
  const double hs_per_s = static_cast<double>(total.cycles) / secs;
  const auto us = [&](std::uint64_t ns) { return static_cast<double>(ns) / 1000.0; };
  std::string failures = "{";
  for (int i = 0; i < static_cast<int>(failure::count_); ++i) {
    if (i > 0) failures += ',';
    failures += "\"" + std::string(to_string(static_cast<failure>(i))) + "\":" + std::to_string(total.failures[i]);
  }
  failures += "}";
  std::printf(
      "{\"tool\":\"wslb-loadgen\",\"mode\":\"%s\",\"label\":\"%s\",\"complete\":%s,\"processes\":%u,"
      "\"targets\":%zu,\"sources\":%zu,\"connections\":%u,\"concurrency\":%u,\"size\":%u,"
      "\"duration_s\":%.3f,\"measured_s\":%.3f,\"open_s\":%.3f,\"attempted\":%llu,\"opened\":%llu,"
      "\"verified\":%llu,\"failed\":%llu,\"failures\":%s,\"messages\":%llu,\"messages_total\":%llu,\"msgs_per_s\":%.1f,"
      "\"mb_per_s\":%.3f,\"cycles\":%llu,\"handshakes_per_s\":%.1f,\"tls_resumed\":%llu,"
      "\"rtt_us\":{\"count\":%llu,\"mean\":%.1f,\"p50\":%.1f,\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f}}\n",
      mode_name(o.mode), label.c_str(), complete ? "true" : "false", processes, o.targets.size(),
      o.sources.size(), o.connections, o.concurrency, o.size, o.duration_s, total.measured_s,
      total.open_s, static_cast<unsigned long long>(total.attempted),
      static_cast<unsigned long long>(total.opened), static_cast<unsigned long long>(total.verified),
      static_cast<unsigned long long>(total.failed()), failures.c_str(),
      static_cast<unsigned long long>(total.messages),
      static_cast<unsigned long long>(total.messages_total), msgs_per_s, mb_per_s,
      static_cast<unsigned long long>(total.cycles), hs_per_s,
      static_cast<unsigned long long>(total.tls_resumed),
      static_cast<unsigned long long>(total.rtt.count()), total.rtt.mean() / 1000.0,
      us(total.rtt.quantile(0.5)), us(total.rtt.quantile(0.99)), us(total.rtt.quantile(0.999)),
      us(total.rtt.max()));
  switch (o.mode) {
    case load_mode::echo:
      std::fprintf(stderr,
                   "# echo %s: %u conns x %u B, %.1f s: %.0f msg/s, %.2f MB/s, RTT p50 %.0f us p99 %.0f us "
                   "p99.9 %.0f us; opened %llu, failed %llu\n",
                   label.c_str(), o.connections, o.size, total.measured_s, msgs_per_s, mb_per_s,
                   us(total.rtt.quantile(0.5)), us(total.rtt.quantile(0.99)), us(total.rtt.quantile(0.999)),
                   static_cast<unsigned long long>(total.opened), static_cast<unsigned long long>(total.failed()));
      break;
    case load_mode::hold:
      std::fprintf(stderr, "# hold %s: %u conns: opened %llu in %.1f s, verified %llu, failed %llu %s\n",
                   label.c_str(), o.connections, static_cast<unsigned long long>(total.opened), total.open_s,
                   static_cast<unsigned long long>(total.verified),
                   static_cast<unsigned long long>(total.failed()), failures.c_str());
      break;
    case load_mode::churn:
      std::fprintf(stderr, "# churn %s: %u in flight, %.1f s: %.0f handshakes/s (%llu cycles), cycle p50 %.0f us p99 %.0f us, failed %llu %s\n",
                   label.c_str(), o.concurrency, total.measured_s, hs_per_s,
                   static_cast<unsigned long long>(total.cycles), us(total.rtt.quantile(0.5)),
                   us(total.rtt.quantile(0.99)), static_cast<unsigned long long>(total.failed()),
                   failures.c_str());
      break;
  }
  if (!complete) return exit_code::failure;
  return total.failed() == 0 ? exit_code::ok : exit_code::failure;
}
