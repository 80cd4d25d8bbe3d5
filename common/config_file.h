// A `--config` file is checked as strictly as the command line: a key `wslb run` does not know,
// a list where one value goes, or a section, is refused with the file and the key named, and a
// bad value read from the file is reported as the file's, not as a flag the operator never typed.
#pragma once

#include <string>
#include <vector>

namespace wslb {

// One key a config file may hold: a `wslb run` option's long name without dashes.
struct config_key {
  std::string name;
  bool takes_list = false;  // `backend = [...]`; every other key takes one value
};

// The value of `--config` in `args` (what follows `wslb run`), or "" when there is none.
std::string config_file_argument(const std::vector<std::string>& args);

// Reads `path` with the same TOML/INI reader the options use. Returns "" when every key is
// one of `known`, with one value unless it takes a list; otherwise "config file PATH: ..."
// naming the key and its value. Pure apart from reading the file.
std::string check_config_file(const std::string& path, const std::vector<config_key>& known);

// `error` is a value error from validation ("--workers: 'four' is not ..."). When that flag is
// not on the command line `args`, the value came from the file at `path`: the message is
// rewritten to name the file and the key ("config file PATH: key 'workers': 'four' is not ...").
std::string attribute_to_config_file(const std::string& error, const std::string& path,
                                     const std::vector<std::string>& args);

}  // namespace wslb
