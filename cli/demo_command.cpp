#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <thread>

#include "cli/commands.h"
#include "cli/subcommand.h"
#include "common/exit_codes.h"
#include "common/parse.h"
#include "common/run_options.h"
#include "demo/echo_server.h"
#include "supervisor/child_process.h"
#include "supervisor/instance_files.h"
#include "supervisor/master.h"

namespace wslb::cli {

namespace {

// Starts one demo echo backend on an ephemeral loopback port; returns its "HOST:PORT" or ""
// when it did not come up within a few seconds.
std::string start_echo_backend(const std::string& id, const std::string& ready_file,
                               pid_t& pid) {
  unlink(ready_file.c_str());
  demo::echo_options options;
  endpoint any;
  std::string error;
  parse_endpoint("127.0.0.1:0", any, error, /*allow_port_zero=*/true);
  options.listen.push_back(any);
  options.id = id;
  options.ready_file = ready_file;
  pid = supervisor::fork_child({}, [&options]() { return demo::run_echo_server(options); });
  for (int i = 0; i < 100 && pid > 0; ++i) {
    std::ifstream f(ready_file);
    std::string address;
    if (std::getline(f, address) && !address.empty()) return address;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return {};
}

}  // namespace

int demo_command(const args& a) {
  CLI::App app{"wslb demo: two WebSocket echo backends behind a wslb instance", "wslb demo"};
  std::string listen = "127.0.0.1:8080";
  std::string name = "demo";
  std::string workers = "2";
  std::string admin = "127.0.0.1:9090";
  app.add_option("--listen", listen, "Where wslb listens")->capture_default_str();
  app.add_option("--admin", admin, "Admin listener with the dashboard, or 'off'")
      ->capture_default_str();
  app.add_option("--name", name, "Instance name")->capture_default_str();
  app.add_option("--workers", workers, "Worker processes")->capture_default_str();
  if (auto done = parse_subcommand(app, a, "demo")) return *done;
  const std::string dir = supervisor::runtime_dir();
  pid_t pids[2] = {0, 0};
  std::vector<std::string> run_args = {"--listen", listen, "--name", name, "--workers", workers,
                                       "--check", "websocket", "--check-interval", "2s"};
  if (admin != "off") {
    run_args.push_back("--admin");
    run_args.push_back(admin);
  }
  for (int i = 0; i < 2; ++i) {
    const std::string id = "echo-" + std::to_string(i + 1);
    const std::string address =
        start_echo_backend(id, dir + "/" + name + "-" + id + ".ready", pids[i]);
    if (address.empty()) {
      std::fprintf(stderr, "wslb demo: the demo echo backend %s did not start\n", id.c_str());
      for (pid_t p : pids) if (p > 0) kill(p, SIGTERM);
      return exit_code::cannot_start;
    }
    run_args.push_back("--backend");
    run_args.push_back(address);
  }
  config cfg;
  const run_parse_result parsed = parse_run_args(run_args, cfg);
  if (!parsed.ok) {
    std::fprintf(stderr, "wslb demo: %s\n", parsed.message.c_str());
    for (pid_t p : pids) kill(p, SIGTERM);
    return exit_code::usage;
  }
  // The path this binary was started from, so the printed commands work when pasted.
  char exe[4096];
  const ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
  const std::string self = len > 0 ? std::string(exe, static_cast<std::size_t>(len)) : "wslb";
  const std::string& backend_2 = run_args.back();
  const std::string& backend_1 = run_args[run_args.size() - 3];
  // Each printed command is one scripts/demo has installed (python3-websockets, curl).
  std::printf(
      "wslb demo: backends %s and %s (WebSocket echo) behind ws://%s/\n"
      "  connect:   /usr/bin/python3 -m websockets ws://%s/   (type a line, it comes back)\n"
      "  status:    %s status --name %s      (add --json for machines)\n",
      backend_1.c_str(), backend_2.c_str(), listen.c_str(), listen.c_str(), self.c_str(),
      name.c_str());
  if (admin != "off") {
    std::printf(
        "  dashboard: http://%s/   (open it in a browser: live connections, events)\n"
        "  metrics:   curl -s http://%s/metrics\n",
        admin.c_str(), admin.c_str());
  }
  std::printf("  stop:      Ctrl-C here, or %s stop --name %s\n\n", self.c_str(), name.c_str());
  std::fflush(stdout);
  const int code = supervisor::run_master(cfg, run_args);
  for (pid_t p : pids) {
    kill(p, SIGTERM);
    waitpid(p, nullptr, 0);
  }
  return code;
}

}  // namespace wslb::cli
