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

TEST_CASE("config_file.misspelt_keys_sections_and_lists_are_refused") {
  // The file's text after a good backend line, and what the message must say.
  const std::pair<const char*, const char*> cases[] = {
      {"drain-timout = \"5s\"\n", "unknown key 'drain-timout'"},  // a good value, a bad key
      {"[check]\ninterval = \"1s\"\n", "unknown key 'check.interval'"},
      {"listen = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\n", "key 'listen' takes one value"},
  };
  for (const auto& [text, expected] : cases) {
    temp_config file(std::string("backend = [\"127.0.0.1:9001\"]\n") + text);
    const auto r = parse_with(file);
    CHECK_FALSE(r.ok);
    CHECK_MESSAGE(r.message.find(expected) != std::string::npos, r.message);
  }
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
