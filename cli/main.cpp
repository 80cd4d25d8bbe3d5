#include <cstdio>
#include <cstring>
#include <string>

#include "cli/commands.h"
#include "common/exit_codes.h"

namespace {

constexpr const char* usage =
    "wslb: a load balancer for WebSocket and other long-lived TCP connections\n"
    "\n"
    "usage:\n"
    "  wslb run --listen HOST:PORT --backend HOST:PORT[,weight=N]... [options]\n"
    "  wslb status [--name NAME] [--json]\n"
    "  wslb restart-workers [--name NAME]\n"
    "  wslb backend list|drain|ready|maint|weight|reset [HOST:PORT [N]] [--name NAME] [--json]\n"
    "  wslb backend add HOST:PORT[,weight=N] | remove HOST:PORT [--drain DURATION] [--name NAME] [--json]\n"
    "  wslb reload [--name NAME]\n"
    "  wslb reopen-logs [--name NAME]\n"
    "  wslb upgrade [--name NAME] [--binary PATH]\n"
    "  wslb stop [--name NAME] [--graceful]\n"
    "  wslb rebalance [--name NAME] [--dry-run]\n"
    "  wslb backend evacuate HOST:PORT --over DURATION [--cancel] [--name NAME]\n"
    "  wslb demo [--listen HOST:PORT]\n"
    "\n"
    "`wslb COMMAND --help` lists a command's options.\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fputs(usage, stderr);
    return wslb::exit_code::usage;
  }
  const std::string verb = argv[1];
  const wslb::cli::args rest(argv + 2, argv + argc);
  if (verb == "run") return wslb::cli::run_command(rest);
  if (verb == "status") return wslb::cli::status_command(rest);
  if (verb == "backend" && !rest.empty() && rest[0] == "evacuate") {
    return wslb::cli::shaping_command("backend evacuate", wslb::cli::args(rest.begin() + 1, rest.end()));
  }
  if (verb == "restart-workers" || verb == "reload" || verb == "upgrade" || verb == "stop" ||
      verb == "backend" || verb == "reopen-logs") {
    return wslb::cli::control_command(verb, rest);
  }
  if (verb == "demo") return wslb::cli::demo_command(rest);
  if (verb == "rebalance") return wslb::cli::shaping_command(verb, rest);
  if (verb == "--help" || verb == "-h" || verb == "help") {
    std::fputs(usage, stdout);
    return wslb::exit_code::ok;
  }
  std::fprintf(stderr, "wslb: unknown command '%s'\n\n%s", verb.c_str(), usage);
  return wslb::exit_code::usage;
}
