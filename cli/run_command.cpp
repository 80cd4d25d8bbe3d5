#include <cstdio>

#include "cli/commands.h"
#include "cluster/start_check.h"
#include "common/exit_codes.h"
#include "common/log.h"
#include "common/run_options.h"
#include "supervisor/master.h"
#include "tls/client_context.h"
#include "tls/server_context.h"

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
  if (cfg.cluster.enabled()) {
    // Once, before anything starts: a Redis that refuses us is a configuration error; one that
    // is down is not (the node balances on its own counts until Redis answers).
    const auto check = cluster::check_redis_at_start(cfg.cluster.redis, 2000);
    const std::string where = cfg.cluster.redis.to_string();
    if (check.verdict == cluster::start_verdict::refused) {
      std::fprintf(stderr, "wslb run: --cluster: Redis at %s: %s\n", where.c_str(),
                   check.detail.c_str());
      return exit_code::cannot_start;
    }
    if (check.verdict == cluster::start_verdict::unreachable) {
      log_line("master", "--cluster: Redis at %s is not reachable now (%s); starting on local "
               "counts, the cluster agent keeps trying", where.c_str(), check.detail.c_str());
    }
  }
  // The certificates and CA files are read now, so that a bad one stops `run` with the usage code too.
  if (const std::string error = tls::load_listener_tls(cfg, unix_ms()); !error.empty()) {
    std::fprintf(stderr, "wslb run: %s\n", error.c_str());
    return exit_code::usage;
  }
  if (const std::string error = tls::load_backend_tls(cfg); !error.empty()) {
    std::fprintf(stderr, "wslb run: %s\n", error.c_str());
    return exit_code::usage;
  }
  return supervisor::run_master(cfg, a);
}

}  // namespace wslb::cli
