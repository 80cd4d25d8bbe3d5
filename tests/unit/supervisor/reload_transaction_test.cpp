#include <doctest/doctest.h>

#include "tests/unit/supervisor/backend_configs.h"
#include "tests/unit/table_image.h"

#include <memory>
#include <string>
#include <vector>

#include "cli/status_view.h"
#include "common/parse.h"
#include "supervisor/reload_steps.h"

using namespace wslb;
using namespace wslb::supervisor;

namespace {

// A later preparation (a certificate that does not load, say): it fails or not, and says what
// was done to it.
struct recorded_step : reload_step {
  std::string fails_with;
  std::vector<std::string>& log;
  recorded_step(std::string why, std::vector<std::string>& l) : fails_with(std::move(why)), log(l) {}
  std::string prepare(config&) override {
    log.push_back("prepare");
    return fails_with;
  }
  void commit(const config&) override { log.push_back("commit"); }
  void roll_back() override { log.push_back("roll_back"); }
};


}  // namespace

TEST_CASE("reload_transaction.a_later_step_that_fails_rolls_back_the_backend_rows") {
  auto t = testing::fresh_table();
  std::string err;
  config first = testing::config_with_backends({"127.0.0.1:9001"});
  REQUIRE(apply_backends(*t, first, err));
  const std::string before = cli::render_status_json(*t, 1000);

  std::vector<std::string> log;
  reload_transaction tx;
  tx.add(std::make_unique<backend_rows_step>(*t));
  tx.add(std::make_unique<recorded_step>("", log));
  tx.add(std::make_unique<recorded_step>("cannot load certificate x.pem", log));
  tx.add(std::make_unique<recorded_step>("", log));
  config next = testing::config_with_backends({"127.0.0.1:9001", "127.0.0.1:9002"});
  CHECK(tx.prepare(next) == "cannot load certificate x.pem");
  // Prepared in order, undone last first; the step after the failure never ran.
  CHECK(log == std::vector<std::string>{"prepare", "prepare", "roll_back"});
  CHECK(t->backends[1].state == shm::backend_state::empty);
  CHECK(cli::render_status_json(*t, 1000) == before);
}

TEST_CASE("reload_transaction.commits_every_step_and_the_check_settings") {
  auto t = testing::fresh_table();
  std::string err;
  config first = testing::config_with_backends({"127.0.0.1:9001"});
  REQUIRE(apply_backends(*t, first, err));
  std::vector<std::string> log;
  reload_transaction tx;
  tx.add(std::make_unique<backend_rows_step>(*t));
  tx.add(std::make_unique<check_settings_step>(*t));
  tx.add(std::make_unique<recorded_step>("", log));
  config next = testing::config_with_backends({"127.0.0.1:9002"});
  next.check.rise = 7;
  REQUIRE(tx.prepare(next) == "");
  CHECK(t->checker.rise == 0);  // nothing visible before the commit
  CHECK(t->backends[0].state == shm::backend_state::active);
  tx.commit(next);
  CHECK(t->checker.rise == 7);
  CHECK(t->backends[0].state == shm::backend_state::removed);
  CHECK(t->backends[1].state == shm::backend_state::active);
  tx.roll_back();  // after a commit there is nothing left to undo
  CHECK(t->backends[1].state == shm::backend_state::active);
  CHECK(log == std::vector<std::string>{"prepare", "commit"});
}
