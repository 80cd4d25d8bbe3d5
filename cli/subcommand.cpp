#include "cli/subcommand.h"

#include <cstdio>

#include "common/exit_codes.h"

namespace wslb::cli {

std::optional<int> parse_subcommand(CLI::App& app, const args& a, const std::string& verb) {
  try {
    app.parse(args(a.rbegin(), a.rend()));  // CLI11 takes its arguments from the back
  } catch (const CLI::CallForHelp&) {
    std::fputs(app.help().c_str(), stdout);
    return exit_code::ok;
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "wslb %s: %s\n", verb.c_str(), e.what());
    return exit_code::usage;
  }
  return std::nullopt;
}

}  // namespace wslb::cli
