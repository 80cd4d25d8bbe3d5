#include "common/config_file.h"

#include <CLI/CLI.hpp>
#include <algorithm>

namespace wslb {

namespace {

std::string quoted_values(const std::vector<std::string>& inputs) {
  std::string out;
  for (const auto& v : inputs) out += (out.empty() ? "'" : ", '") + v + "'";
  return inputs.size() == 1 ? out : "[" + out + "]";
}

bool on_command_line(const std::string& flag, const std::vector<std::string>& args) {
  return std::any_of(args.begin(), args.end(), [&](const std::string& a) {
    return a == flag || a.rfind(flag + "=", 0) == 0;
  });
}

}  // namespace

std::string config_file_argument(const std::vector<std::string>& args) {
  std::string path;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--config" && i + 1 < args.size()) path = args[i + 1];
    if (args[i].rfind("--config=", 0) == 0) path = args[i].substr(9);
  }
  return path;
}

std::string check_config_file(const std::string& path, const std::vector<config_key>& known) {
  const std::string where = "config file " + path + ": ";
  std::vector<CLI::ConfigItem> items;
  try {
    items = CLI::ConfigTOML().from_file(path);
  } catch (const CLI::FileError&) {
    return where + "cannot be read";
  } catch (const CLI::ParseError& e) {
    return where + e.what();
  }
  for (const auto& item : items) {
    // CLI11 marks where a [section] opens ("++") and closes ("--"); its keys carry parents.
    if (item.name == "++" || item.name == "--") continue;
    const std::string key = item.fullname();
    const auto k = std::find_if(known.begin(), known.end(),
                                [&](const config_key& c) { return c.name == key; });
    if (!item.parents.empty() || k == known.end()) {
      return where + "unknown key '" + key + "' (= " + quoted_values(item.inputs) +
             "); the keys are the flags of `wslb run` without dashes";
    }
    if (!k->takes_list && item.inputs.size() != 1) {
      return where + "key '" + key + "' takes one value, not " + quoted_values(item.inputs);
    }
  }
  return {};
}

std::string attribute_to_config_file(const std::string& error, const std::string& path,
                                     const std::vector<std::string>& args) {
  const auto colon = error.find(": ");
  if (path.empty() || error.rfind("--", 0) != 0 || colon == std::string::npos) return error;
  const std::string flag = error.substr(0, colon);
  if (on_command_line(flag, args)) return error;
  return "config file " + path + ": key '" + flag.substr(2) + "': " + error.substr(colon + 2);
}

}  // namespace wslb
