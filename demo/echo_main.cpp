// wslb-echo: the demo echo backend as a command (see echo_server.h).
#include <CLI/CLI.hpp>

#include <string>
#include <vector>

#include "common/exit_codes.h"
#include "common/parse.h"
#include "demo/echo_server.h"

int main(int argc, char** argv) {
  CLI::App app{"wslb-echo: WebSocket / HTTP / raw TCP echo backend for wslb's tests and benchmarks"};
  std::vector<std::string> listen_texts;
  wslb::demo::echo_options options;
  app.add_option("--listen", listen_texts, "HOST:PORT to listen on (repeatable; port 0: any free)")
      ->required();
  app.add_option("--id", options.id, "name reported in whoami and HTTP answers");
  app.add_option("--processes", options.processes, "processes sharing the listeners")
      ->check(CLI::Range(1u, 64u));
  app.add_flag("--proxy-protocol", options.proxy_protocol,
               "expect and strip a PROXY v1/v2 header on each connection");
  app.add_flag("--black-hole", options.black_hole, "accept, never answer, never close");
  app.add_option("--http-status", options.http_status, "status of plain HTTP answers")
      ->check(CLI::Range(100, 599));
  app.add_option("--ready-file", options.ready_file,
                 "file written once listening (one HOST:PORT line per listener)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? wslb::exit_code::ok : wslb::exit_code::usage;
  }
  for (const auto& text : listen_texts) {
    wslb::endpoint where;
    std::string error;
    if (!wslb::parse_endpoint(text, where, error, true)) {
      std::fprintf(stderr, "wslb-echo: --listen: %s\n", error.c_str());
      return wslb::exit_code::usage;
    }
    options.listen.push_back(where);
  }
  return wslb::demo::run_echo_server(options);
}
