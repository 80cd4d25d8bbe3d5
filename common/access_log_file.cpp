#include "common/access_log_file.h"

#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

namespace wslb {

int open_access_log_file(const std::string& path) {
  const int fd = open(path.c_str(), access_log_open_flags, access_log_mode);
  return fd >= 0 ? fd : -errno;
}

std::string prepare_access_log_file(const std::string& path, const run_as_config& run_as) {
  if (path == access_log_stdout) return {};
  if (path.empty()) return "the path is empty (use - for standard output)";
  const int fd = open_access_log_file(path);
  if (fd < 0) return "cannot open '" + path + "': " + std::strerror(-fd);
  struct stat st {};
  std::string error;
  if (fstat(fd, &st) != 0) {
    error = "cannot open '" + path + "': " + std::strerror(errno);
  } else if (!S_ISREG(st.st_mode) && !S_ISFIFO(st.st_mode) && !S_ISCHR(st.st_mode)) {
    error = "'" + path + "' is not a regular file, a FIFO or a character device";
  } else if (!run_as.user.empty() && geteuid() == 0 && S_ISREG(st.st_mode) &&
             fchown(fd, run_as.uid, run_as.gid) != 0) {
    error = "cannot give '" + path + "' to " + run_as.user + ": " + std::strerror(errno);
  }
  close(fd);
  return error;
}

}  // namespace wslb
