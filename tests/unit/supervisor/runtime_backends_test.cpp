#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "supervisor/backend_overrides.h"
#include "supervisor/runtime_backends.h"
#include "tests/unit/supervisor/backend_configs.h"

using namespace wslb;
using supervisor::runtime_backend;
using supervisor::runtime_backend_map;
using wslb::testing::config_with_backends;

namespace {
std::vector<std::string> addresses(const config& c) {
  std::vector<std::string> out;
  for (const auto& b : c.backends) out.push_back(b.where.to_string());
  return out;
}
}  // namespace

TEST_CASE("runtime_backends.a_line_is_spelt_one_way") {
  const config c = config_with_backends(
      {"127.0.0.1:9001", "127.0.0.1:9002,slowstart=30s,weight=3,maxconn=10"});
  CHECK(supervisor::backend_line(c.backends[0]) == "127.0.0.1:9001,weight=1");
  CHECK(supervisor::backend_line(c.backends[1]) ==
        "127.0.0.1:9002,weight=3,maxconn=10,slowstart=30000ms");
  // The spelling parses back to the same backend.
  const config again = config_with_backends({"127.0.0.1:9002,weight=3,maxconn=10,slowstart=30000ms"});
  CHECK(supervisor::backend_line(again.backends[0]) == supervisor::backend_line(c.backends[1]));
}

TEST_CASE("runtime_backends.a_tls_line_keeps_its_name_and_ca") {
  const config c = config_with_backends({"127.0.0.1:9443,ca=/etc/ca.pem,tls,sni=app.internal"});
  const std::string line = supervisor::backend_line(c.backends[0]);
  CHECK(line == "127.0.0.1:9443,weight=1,tls,sni=app.internal,ca=/etc/ca.pem");
  const config again = config_with_backends({line.c_str()});
  CHECK(again.backends[0].tls.enabled);
  CHECK(supervisor::backend_line(again.backends[0]) == line);
}

TEST_CASE("runtime_backends.state_file_round_trips_with_overrides") {
  supervisor::override_map overrides;
  overrides["127.0.0.1:9001"] = {"127.0.0.1:9001,weight=1", shm::admin_state::drain, 0};
  runtime_backend_map runtime;
  runtime["127.0.0.1:9003"] = {true, "127.0.0.1:9003,weight=2"};
  runtime["127.0.0.1:9002"] = {false, "127.0.0.1:9002,weight=1"};
  const std::string text = supervisor::render_state_file(overrides, runtime);
  CHECK(text.find("added\t127.0.0.1:9003\t127.0.0.1:9003,weight=2\n") != std::string::npos);
  CHECK(text.find("removed\t127.0.0.1:9002\t127.0.0.1:9002,weight=1\n") != std::string::npos);
  supervisor::override_map overrides_back;
  runtime_backend_map runtime_back;
  CHECK(supervisor::parse_state_file(text, overrides_back, runtime_back) == "");
  CHECK(overrides_back == overrides);
  CHECK(runtime_back == runtime);
}

TEST_CASE("runtime_backends.a_malformed_record_says_where_and_changes_nothing") {
  supervisor::override_map overrides;
  runtime_backend_map runtime;
  runtime["x:1"] = {true, "x:1,weight=1"};
  CHECK(supervisor::parse_state_file("added\ta:1\tb:1,weight=1\n", overrides, runtime) ==
        "line 1: the line 'b:1,weight=1' is not that of 'a:1'");
  CHECK(supervisor::parse_state_file("# c\nremoved\ta:1\n", overrides, runtime) ==
        "line 2: expected 'added' or 'removed', address, line separated by tabs");
  CHECK(runtime.size() == 1);
  CHECK(runtime.count("x:1") == 1);
}

TEST_CASE("runtime_backends.additions_and_removals_join_the_file") {
  config c = config_with_backends({"127.0.0.1:9001", "127.0.0.1:9002"});
  runtime_backend_map records;
  records["127.0.0.1:9003"] = {true, "127.0.0.1:9003,weight=4"};
  records["127.0.0.1:9001"] = {false, "127.0.0.1:9001,weight=1"};
  CHECK(supervisor::merge_runtime_backends(records, c).empty());
  CHECK(addresses(c) == std::vector<std::string>{"127.0.0.1:9002", "127.0.0.1:9003"});
  CHECK(c.backends[1].weight == 4);
}

TEST_CASE("runtime_backends.the_file_wins_and_the_dropped_records_are_named") {
  // The operator added 9003 at run time, then wrote it into the file with another weight; and
  // removed 9001 at run time, then edited its line.
  config c = config_with_backends({"127.0.0.1:9001,weight=5", "127.0.0.1:9002",
                                   "127.0.0.1:9003,weight=2"});
  runtime_backend_map records;
  records["127.0.0.1:9003"] = {true, "127.0.0.1:9003,weight=4"};
  records["127.0.0.1:9001"] = {false, "127.0.0.1:9001,weight=1"};
  records["127.0.0.1:9009"] = {false, "127.0.0.1:9009,weight=1"};
  records["127.0.0.1:9010"] = {true, "127.0.0.1:9010,weight=0"};
  const std::vector<std::string> dropped = supervisor::merge_runtime_backends(records, c);
  CHECK(dropped == std::vector<std::string>{
                       "127.0.0.1:9001 (its removal: the line changed: 127.0.0.1:9001,weight=1 "
                       "-> 127.0.0.1:9001,weight=5)",
                       "127.0.0.1:9009 (its removal: no longer configured)",
                       "127.0.0.1:9003 (its addition: now configured as 127.0.0.1:9003,weight=2)",
                       "127.0.0.1:9010 (its addition: 'weight=0' in '127.0.0.1:9010,weight=0' is "
                       "not weight=N with N in 1-1000)"});
  CHECK(addresses(c) ==
        std::vector<std::string>{"127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"});
  CHECK(c.backends[2].weight == 2);
}

TEST_CASE("runtime_backends.a_removal_never_leaves_no_backend") {
  config c = config_with_backends({"127.0.0.1:9001"});
  runtime_backend_map records;
  records["127.0.0.1:9001"] = {false, "127.0.0.1:9001,weight=1"};
  const auto dropped = supervisor::merge_runtime_backends(records, c);
  CHECK(dropped == std::vector<std::string>{"127.0.0.1:9001 (its removal: it would leave no backend)"});
  CHECK(c.backends.size() == 1);
}
