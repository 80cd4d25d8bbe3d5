#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "cli/commands.h"
#include "cli/subcommand.h"
#include "common/exit_codes.h"
#include "common/parse.h"
#include "supervisor/instance_files.h"

namespace wslb::cli {

// Sends `command` to the master and relays its reply lines to stdout; the last line starts
// with "ok" or "error". Blocks until the master answers (a graceful stop answers only once
// the instance has drained).
int send_command(const std::string& name, const std::string& command) {
  std::string path;
  try {
    path = supervisor::control_socket_path(name);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "wslb: %s\n", e.what());
    return exit_code::failure;
  }
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    std::fprintf(stderr, "wslb: control socket path too long: %s\n", path.c_str());
    return exit_code::failure;
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    std::fprintf(stderr, "wslb: instance '%s' is not running (cannot reach %s: %s)\n",
                 name.c_str(), path.c_str(), strerror(errno));
    close(fd);
    return exit_code::failure;
  }
  const std::string line = command + "\n";
  if (write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
    std::fprintf(stderr, "wslb: cannot send to %s: %s\n", path.c_str(), strerror(errno));
    close(fd);
    return exit_code::failure;
  }
  std::string reply;
  char buf[4096];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    reply.append(buf, static_cast<std::size_t>(n));
  }
  close(fd);
  // The final line decides; earlier lines are progress.
  std::string last;
  std::size_t start = 0;
  while (start < reply.size()) {
    std::size_t end = reply.find('\n', start);
    if (end == std::string::npos) end = reply.size();
    last = reply.substr(start, end - start);
    start = end + 1;
    if (start < reply.size()) std::printf("%s\n", last.c_str());
  }
  if (last.rfind("ok ", 0) == 0) {
    std::printf("%s\n", last.c_str() + 3);
    return exit_code::ok;
  }
  if (last.rfind("error ", 0) == 0) {
    std::fprintf(stderr, "wslb %s: %s\n", command.c_str(), last.c_str() + 6);
  } else {
    std::fprintf(stderr, "wslb %s: the master closed the connection without an answer\n",
                 command.c_str());
  }
  return exit_code::failure;
}

int control_command(const std::string& verb, const args& a) {
  CLI::App app{"wslb " + verb, "wslb " + verb};
  std::string name = "wslb";
  bool graceful = false;
  bool json = false;
  std::vector<std::string> words;  // backend: the action and its operands
  std::string drain;               // backend remove --drain DURATION
  app.add_option("--name", name, "Instance name")->capture_default_str();
  std::string binary;
  if (verb == "stop") app.add_flag("--graceful", graceful, "Close the listener and drain first");
  if (verb == "backend") {
    app.add_option("action", words,
                   "list | add HOST:PORT[,weight=N][,maxconn=N][,slowstart=D] | "
                   "remove HOST:PORT | drain HOST:PORT | ready HOST:PORT | maint HOST:PORT | "
                   "weight HOST:PORT N | reset")
        ->required();
    app.add_option("--drain", drain,
                   "remove: close its connections evenly over this long (like 30s) instead of "
                   "waiting for them to close");
    app.add_flag("--json", json, "Answer in JSON");
  }
  if (verb == "upgrade") {
    app.add_option("--binary", binary,
                   "The wslb binary to re-execute (default: the one the master runs)");
  }
  if (auto done = parse_subcommand(app, a, verb)) return *done;
  if (verb == "backend") {
    std::string line = "backend";
    for (const auto& w : words) line += " " + w;
    if (!drain.empty()) {
      std::uint32_t drain_ms = 0;
      std::string error;
      if (words[0] != "remove") error = "goes with 'remove' only";
      else if (!parse_duration_ms(drain, drain_ms, error)) {}
      else if (drain_ms == 0 || drain_ms > 86'400'000) error = "'" + drain + "' is not 1ms to 24h";
      if (!error.empty()) {
        std::fprintf(stderr, "wslb backend: --drain: %s\n", error.c_str());
        return exit_code::usage;
      }
      line += " drain=" + std::to_string(drain_ms);
    }
    return send_command(name, json ? line + " --json" : line);
  }
  if (verb == "upgrade" && !binary.empty()) {
    // The master resolves nothing relative to the caller's directory.
    char* resolved = realpath(binary.c_str(), nullptr);
    if (resolved == nullptr) {
      std::fprintf(stderr, "wslb upgrade: --binary %s: %s\n", binary.c_str(), strerror(errno));
      return exit_code::usage;
    }
    binary = resolved;
    std::free(resolved);
    return send_command(name, "upgrade " + binary);
  }
  return send_command(name, graceful ? "stop graceful" : verb);
}

}  // namespace wslb::cli
