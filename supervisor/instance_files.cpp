#include "supervisor/instance_files.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace wslb::supervisor {

std::string runtime_dir() {
  const char* override_dir = std::getenv("WSLB_RUNTIME_DIR");
  std::string dir = override_dir && *override_dir ? override_dir
                                                  : "/tmp/wslb-" + std::to_string(getuid());
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    throw std::runtime_error("cannot create runtime directory " + dir + ": " + strerror(errno));
  }
  struct stat st{};
  if (lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    throw std::runtime_error("runtime directory " + dir + " is not a directory");
  }
  // The control socket lives here: refuse a directory another user could swap files in.
  if (st.st_uid != getuid() || (st.st_mode & 0077) != 0) {
    throw std::runtime_error("runtime directory " + dir +
                             " must belong to this user with mode 0700");
  }
  return dir;
}

std::string control_socket_path(const std::string& instance_name) {
  return runtime_dir() + "/" + instance_name + ".sock";
}

std::string lock_file_path(const std::string& instance_name) {
  return runtime_dir() + "/" + instance_name + ".lock";
}

int take_instance_lock(const std::string& path) {
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("cannot open " + path + ": " + strerror(errno));
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

}  // namespace wslb::supervisor
