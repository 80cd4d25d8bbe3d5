#include "common/run_as.h"

#include <grp.h>
#include <pwd.h>

#include <charconv>

namespace wslb {

namespace {

bool parse_id(const std::string& text, unsigned& out) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size() && !text.empty();
}

}  // namespace

bool parse_run_as(const std::string& text, run_as_config& out, std::string& error) {
  const std::size_t colon = text.find(':');
  out.user = text.substr(0, colon);
  out.group = colon == std::string::npos ? "" : text.substr(colon + 1);
  if (out.user.empty() || (colon != std::string::npos && out.group.empty())) {
    error = "'" + text + "' is not USER or USER:GROUP";
    return false;
  }
  unsigned id = 0;
  const passwd* pw = getpwnam(out.user.c_str());
  if (!pw && parse_id(out.user, id)) pw = getpwuid(id);
  if (!pw) {
    error = "no user '" + out.user + "'";
    return false;
  }
  out.uid = pw->pw_uid;
  out.gid = pw->pw_gid;
  if (!out.group.empty()) {
    const group* gr = getgrnam(out.group.c_str());
    if (!gr && parse_id(out.group, id)) gr = getgrgid(id);
    if (!gr) {
      error = "no group '" + out.group + "'";
      return false;
    }
    out.gid = gr->gr_gid;
  }
  return true;
}

}  // namespace wslb
