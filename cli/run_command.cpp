#include <cstdio>

#include "cli/commands.h"
#include "common/exit_codes.h"
#include "common/run_options.h"
#include "supervisor/master.h"

namespace wslb::cli {

int run_command(const args& a) {
  config cfg;
  const run_parse_result parsed = parse_run_args(a, cfg);
  if (parsed.help) {
    std::fputs(parsed.message.c_str(), stdout);
    return exit_code::ok;
  }
  if (!parsed.ok) {
    std::fprintf(stderr, "wslb run: %s\n", parsed.message.c_str());
    return exit_code::usage;
  }
  return supervisor::run_master(cfg, a);
}

}  // namespace wslb::cli
