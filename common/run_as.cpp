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

// The entry named `text`, else the one whose numeric id `text` is (getpwnam/getpwuid,
// getgrnam/getgrgid), else nullptr.
template <typename Entry, typename Id>
const Entry* find_entry(const std::string& text, Entry* (*by_name)(const char*),
                        Entry* (*by_id)(Id)) {
  if (const Entry* e = by_name(text.c_str())) return e;
  unsigned id = 0;
  return parse_id(text, id) ? by_id(static_cast<Id>(id)) : nullptr;
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
  const passwd* pw = find_entry(out.user, &getpwnam, &getpwuid);
  if (!pw) {
    error = "no user '" + out.user + "'";
    return false;
  }
  out.uid = pw->pw_uid;
  out.gid = pw->pw_gid;
  if (!out.group.empty()) {
    const group* gr = find_entry(out.group, &getgrnam, &getgrgid);
    if (!gr) {
      error = "no group '" + out.group + "'";
      return false;
    }
    out.gid = gr->gr_gid;
  }
  return true;
}

}  // namespace wslb
