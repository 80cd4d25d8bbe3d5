#include <CLI/CLI.hpp>
#include <cstdio>

#include "cli/commands.h"
#include "cli/subcommand.h"
#include "common/exit_codes.h"
#include "common/parse.h"

namespace wslb::cli {

int shaping_command(const std::string& verb, const args& a) {
  CLI::App app{"wslb " + verb, "wslb " + verb};
  std::string name = "wslb";
  app.add_option("--name", name, "Instance name")->capture_default_str();
  if (verb == "rebalance") {
    bool dry_run = false;
    app.add_flag("--dry-run", dry_run, "Print the plan (current, target, surplus, time) only");
    if (auto done = parse_subcommand(app, a, verb)) return *done;
    return send_command(name, dry_run ? "rebalance dry-run" : "rebalance");
  }
  std::string address, over;
  bool cancel = false;
  app.add_option("address", address, "The backend, HOST:PORT as configured")->required();
  app.add_option("--over", over, "Close its connections evenly over this long (like 2m)");
  app.add_flag("--cancel", cancel, "End an evacuation: the backend takes new connections again");
  if (auto done = parse_subcommand(app, a, verb)) return *done;
  if (cancel) return send_command(name, "backend-evacuate " + address + " cancel");
  std::uint32_t over_ms = 0;
  std::string error;
  if (over.empty() || !parse_duration_ms(over, over_ms, error)) {
    std::fprintf(stderr, "wslb %s: --over: %s\n", verb.c_str(),
                 over.empty() ? "a duration is required (like 2m)" : error.c_str());
    return exit_code::usage;
  }
  return send_command(name, "backend-evacuate " + address + " " + std::to_string(over_ms));
}

}  // namespace wslb::cli
