#include "checker/checker_main.h"

#include "checker/scheduler.h"
#include "common/exit_codes.h"
#include "common/helper_loop.h"

namespace wslb::checker {

int run_checker(const config& cfg, shm::table& table, int master_fd) {
  helper_loop process("checker", master_fd);
  if (!process.open()) return exit_code::failure;
  scheduler sched(process.loop(), table, cfg.check);
  sched.start();
  return process.run([&sched] { sched.stop(); });
}

}  // namespace wslb::checker
