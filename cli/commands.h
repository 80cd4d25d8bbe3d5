// The `wslb` subcommands. Each takes the arguments after its name and returns the exit code.
#pragma once

#include <string>
#include <vector>

namespace wslb::cli {

using args = std::vector<std::string>;

int run_command(const args& a);              // wslb run ...: the master, in the foreground
int status_command(const args& a);           // wslb status [--name N] [--json]
// restart-workers, reload, stop [--graceful]: sent to the master's control socket.
int control_command(const std::string& verb, const args& a);
int demo_command(const args& a);             // wslb demo: two echo backends + an instance
// wslb rebalance [--dry-run], wslb backend evacuate HOST:PORT --over D [--cancel].
int shaping_command(const std::string& verb, const args& a);

// Sends one command line to instance `name`'s master, prints its progress lines and the final
// one, and returns the exit code (0 when the final line is "ok ...").
int send_command(const std::string& name, const std::string& command);

}  // namespace wslb::cli
