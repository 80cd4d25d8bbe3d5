// Parsing a subcommand's own flags with CLI11, the same way for every subcommand.
#pragma once

#include <CLI/CLI.hpp>
#include <optional>
#include <string>

#include "cli/commands.h"

namespace wslb::cli {

// Parses `a` into `app`. Returns the exit code to return at once (after --help: 0, with the help
// printed; after a bad flag: 2, with "wslb VERB: message" on stderr), or nullopt to go on.
std::optional<int> parse_subcommand(CLI::App& app, const args& a, const std::string& verb);

}  // namespace wslb::cli
