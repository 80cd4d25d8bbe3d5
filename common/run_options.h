// The `wslb run` command line and config file, parsed with CLI11 into a validated config.
// Used by the CLI at start-up and by the master again on every reload (the same argv, the
// config file re-read), so both accept exactly the same things.
#pragma once

#include <string>
#include <vector>

#include "common/config.h"

namespace wslb {

struct run_parse_result {
  bool ok = false;
  bool help = false;      // --help was asked: `message` holds the help text
  std::string message;    // on error: names the flag and the value, e.g. "--listen: ..."
};

// Parses `args` (what follows `wslb run`) into `out`. Never throws, never exits.
run_parse_result parse_run_args(const std::vector<std::string>& args, config& out);

}  // namespace wslb
