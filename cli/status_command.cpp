#include <CLI/CLI.hpp>
#include <cstdio>
#include <optional>
#include <string>

#include "cli/commands.h"
#include "cli/subcommand.h"
#include "cli/status_view.h"
#include "common/exit_codes.h"
#include "common/log.h"
#include "shm/table.h"
#include "supervisor/instance_files.h"

namespace wslb::cli {


int status_command(const args& a) {
  CLI::App app{"wslb status: live workers, backends and counts of a running instance",
               "wslb status"};
  std::string name = "wslb";
  bool json = false;
  app.add_option("--name", name, "Instance name")->capture_default_str();
  app.add_flag("--json", json, "Machine-readable output");
  if (auto done = parse_subcommand(app, a, "status")) return *done;
  try {
    // The table is checked first (owner, mode, layout), so that a forged or foreign one is
    // named as such; whether its master lives is the instance lock's to say, not a pid's.
    const std::string segment = supervisor::recorded_table(name);
    if (segment.empty()) {
      std::fprintf(stderr, "wslb status: instance '%s' is not running (no table recorded in %s)\n",
                   name.c_str(), supervisor::runtime_dir().c_str());
      return exit_code::failure;
    }
    std::optional<shm::table_mapping> mapping;
    try {
      mapping.emplace(shm::table_mapping::attach(segment, shm::access::read_only));
    } catch (const shm::table_missing& e) {
      std::fprintf(stderr, "wslb status: instance '%s' is not running (%s)\n", name.c_str(),
                   e.what());
      return exit_code::failure;
    }
    const shm::table& t = mapping->get();
    if (!supervisor::instance_lock_held(supervisor::lock_file_path(name))) {
      std::fprintf(stderr,
                   "wslb status: instance '%s' is not running (stale table left by master pid %d)\n",
                   name.c_str(), t.header.master_pid.load());
      return exit_code::failure;
    }
    const std::string text = json ? render_status_json(t, unix_ms()) : render_status_text(t, unix_ms());
    std::fwrite(text.data(), 1, text.size(), stdout);
    return exit_code::ok;
  } catch (const std::runtime_error& e) {  // table_error, or the runtime directory
    std::fprintf(stderr, "wslb status: %s\n", e.what());
    return exit_code::failure;
  }
}

}  // namespace wslb::cli
