// `wslb-faulty run ...` is `wslb run ...` whose workers can be made to fail at start, the way a
// worker with a configuration it cannot serve (exit 78) or one crashing on start-up would.
// WSLB_FAULT_FOR_TEST names a file read by every new worker right after fork: while it holds
// "worker-fatal-config" the worker exits 78, while it holds "worker-crash" it aborts, while it
// holds "worker-hang" it never gets ready (it waits until it is killed); any other content, or
// no file, lets it start. The hook lives in this test binary's child_ops, not in
// the shipped `wslb`.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "common/exit_codes.h"
#include "common/log.h"
#include "common/run_options.h"
#include "supervisor/master.h"
#include "supervisor/process_ops.h"

namespace {

// The exit code the fault file asks for, or -1 for none (a crash never returns).
int injected_start_failure() {
  const char* path = std::getenv("WSLB_FAULT_FOR_TEST");
  if (!path) return -1;
  std::ifstream file(path);
  std::string fault;
  if (!(file >> fault)) return -1;
  if (fault == "worker-fatal-config") {
    wslb::log_line("worker", "cannot start: fatal configuration (injected for the test)");
    return wslb::exit_code::fatal_config;
  }
  if (fault == "worker-crash") std::abort();
  if (fault == "worker-hang") {
    for (;;) pause();
  }
  return -1;
}

class faulty_process_ops : public wslb::supervisor::process_ops {
 public:
  using process_ops::process_ops;
  pid_t spawn(const wslb::supervisor::child_spec& spec) override {
    if (!spec.is_worker()) return process_ops::spawn(spec);
    wslb::supervisor::child_spec faulty = spec;
    faulty.body = [body = spec.body](int channel_fd) {
      const int code = injected_start_failure();
      return code >= 0 ? code : body(channel_fd);
    };
    return process_ops::spawn(faulty);
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) != "run") {
    std::fputs("usage: wslb-faulty run [wslb run options]\n", stderr);
    return wslb::exit_code::usage;
  }
  const std::vector<std::string> args(argv + 2, argv + argc);
  wslb::config cfg;
  const wslb::run_parse_result parsed = wslb::parse_run_args(args, cfg);
  if (!parsed.ok) {
    std::fprintf(stderr, "wslb-faulty run: %s\n", parsed.message.c_str());
    return wslb::exit_code::usage;
  }
  return wslb::supervisor::run_master(cfg, args, [](uv_loop_t* loop,
                                                    wslb::supervisor::child_events& events) {
    return std::make_unique<faulty_process_ops>(loop, events);
  });
}
