#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "common/config_file.h"
#include "common/run_options.h"

using namespace wslb;

namespace {

// A config file in /tmp holding `text`, removed when the test ends.
struct temp_config {
  std::string path = "/tmp/wslb-config-test-" + std::to_string(getpid()) + ".toml";
  explicit temp_config(const std::string& text) { std::ofstream(path) << text; }
  ~temp_config() { std::remove(path.c_str()); }
};

run_parse_result parse_with(const temp_config& file, std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"--config", file.path};
  args.insert(args.end(), extra.begin(), extra.end());
  config cfg;
  return parse_run_args(args, cfg);
}

}  // namespace

TEST_CASE("config_file.accepts_every_flag_name") {
  temp_config file(
      "listen = \"127.0.0.1:8081\"\nbackend = [\"127.0.0.1:9001\", \"127.0.0.1:9002,weight=2\"]\n"
      "workers = 3\ndrain-timeout = \"5s\"\ncheck = \"none\"\n");
  config cfg;
  const auto r = parse_run_args({"--config", file.path}, cfg);
  REQUIRE_MESSAGE(r.ok, r.message);
  CHECK(cfg.workers == 3);
  CHECK(cfg.drain_timeout_ms == 5000);
  CHECK(cfg.backends.size() == 2);
}

TEST_CASE("config_file.unknown_key_names_file_key_and_value") {
  temp_config file("backend = [\"127.0.0.1:9001\"]\nworkrs = 4\n");
  const auto r = parse_with(file);
  CHECK_FALSE(r.ok);
  CHECK(r.message.find("config file " + file.path) == 0);
  CHECK(r.message.find("unknown key 'workrs'") != std::string::npos);
  CHECK(r.message.find("'4'") != std::string::npos);
}

TEST_CASE("config_file.a_misspelt_key_is_refused_even_with_a_good_value") {
  temp_config file("backend = [\"127.0.0.1:9001\"]\ndrain-timout = \"5s\"\n");
  const auto r = parse_with(file);
  CHECK_FALSE(r.ok);
  CHECK(r.message.find("unknown key 'drain-timout'") != std::string::npos);
}

TEST_CASE("config_file.a_section_is_an_unknown_key") {
  temp_config file("backend = [\"127.0.0.1:9001\"]\n[check]\ninterval = \"1s\"\n");
  const auto r = parse_with(file);
  CHECK_FALSE(r.ok);
  CHECK(r.message.find("unknown key 'check.interval'") != std::string::npos);
}

TEST_CASE("config_file.a_list_where_one_value_goes_is_refused") {
  temp_config file("backend = [\"127.0.0.1:9001\"]\nlisten = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\n");
  const auto r = parse_with(file);
  CHECK_FALSE(r.ok);
  CHECK(r.message.find("key 'listen' takes one value") != std::string::npos);
}

TEST_CASE("config_file.a_bad_value_from_the_file_names_the_file_and_key") {
  temp_config file("backend = [\"127.0.0.1:9001\"]\nworkers = \"four\"\n");
  const auto r = parse_with(file);
  CHECK_FALSE(r.ok);
  CHECK(r.message == "config file " + file.path +
                         ": key 'workers': 'four' is not a whole number from 1 to 64");
  temp_config range("backend = [\"127.0.0.1:9001\"]\ncheck-rise = 500\n");
  const auto out_of_range = parse_with(range);
  CHECK(out_of_range.message.find("key 'check-rise': '500'") != std::string::npos);
}

TEST_CASE("config_file.a_bad_flag_on_the_command_line_stays_the_flags") {
  temp_config file("backend = [\"127.0.0.1:9001\"]\n");
  const auto r = parse_with(file, {"--workers", "zero"});
  CHECK(r.message.rfind("--workers: 'zero'", 0) == 0);
}

TEST_CASE("config_file.a_missing_file_is_named") {
  config cfg;
  const auto r = parse_run_args({"--config", "/nonexistent/wslb.toml"}, cfg);
  CHECK_FALSE(r.ok);
  CHECK(r.message == "config file /nonexistent/wslb.toml: cannot be read");
}

TEST_CASE("config_file.finds_the_config_argument") {
  CHECK(config_file_argument({"--workers", "2"}).empty());
  CHECK(config_file_argument({"--config", "a.toml"}) == "a.toml");
  CHECK(config_file_argument({"--config=b.ini", "--workers", "2"}) == "b.ini");
}
