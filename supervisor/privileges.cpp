#include "supervisor/privileges.h"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace wslb::supervisor {

bool drop_privileges(const run_as_config& who, std::string& error) {
  if (getuid() == who.uid && geteuid() == who.uid && getgid() == who.gid) return true;
  if (geteuid() != 0) {
    error = "cannot switch to user '" + who.user + "': wslb must be started as root for --user";
    return false;
  }
  const auto failed = [&](const char* call) {
    error = std::string("cannot switch to user '") + who.user + "': " + call + ": " +
            strerror(errno);
    return false;
  };
  // Supplementary groups first, while still root: initgroups needs the rights to set them.
  const passwd* pw = getpwuid(who.uid);
  if (pw ? initgroups(pw->pw_name, who.gid) != 0 : setgroups(1, &who.gid) != 0) {
    return failed("setting supplementary groups");
  }
  if (setresgid(who.gid, who.gid, who.gid) != 0) return failed("setresgid");
  if (setresuid(who.uid, who.uid, who.uid) != 0) return failed("setresuid");
  if (who.uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) {
    error = "cannot switch to user '" + who.user + "': root could be regained";
    return false;
  }
  return true;
}

}  // namespace wslb::supervisor
