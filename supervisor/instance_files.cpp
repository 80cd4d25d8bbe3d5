#include "supervisor/instance_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace wslb::supervisor {

namespace {

// The whole file, as an open-file-description lock: it belongs to the descriptor (not to the
// process, so a forked child closing its copy cannot drop it), the kernel drops it when the
// master dies, and F_OFD_GETLK can see it without taking it.
struct flock whole_file(short type) {
  struct flock fl{};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  return fl;
}

// Opens one of the instance's files without following a link another user could have planted,
// and checks it is a plain file of this user's. Returns the fd or -1 (errno set; EPERM for a foreign file).
int open_own_file(const std::string& path, int flags) {
  const int fd = open(path.c_str(), flags | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return -1;
  struct stat st{};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
    close(fd);
    errno = EPERM;
    return -1;
  }
  return fd;
}

}  // namespace

std::string runtime_dir() {
  const char* override_dir = std::getenv("WSLB_RUNTIME_DIR");
  std::string dir = override_dir && *override_dir ? override_dir
                                                  : "/tmp/wslb-" + std::to_string(geteuid());
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    throw std::runtime_error("cannot create runtime directory " + dir + ": " + strerror(errno));
  }
  struct stat st{};
  if (lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    throw std::runtime_error("runtime directory " + dir + " is not a directory");
  }
  // The control socket lives here: refuse a directory another user could swap files in.
  if (st.st_uid != geteuid() || (st.st_mode & 0077) != 0) {
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
  const int fd = open_own_file(path, O_RDWR | O_CREAT);
  if (fd < 0 && (errno == EPERM || errno == ELOOP)) {
    throw std::runtime_error("refusing lock file " + path +
                             ": not a plain file of this user's");
  }
  if (fd < 0) throw std::runtime_error("cannot open " + path + ": " + strerror(errno));
  struct flock fl = whole_file(F_WRLCK);
  if (fcntl(fd, F_OFD_SETLK, &fl) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

namespace {
std::string table_record_path(const std::string& instance_name) {
  return runtime_dir() + "/" + instance_name + ".table";
}
}  // namespace

std::string recorded_table(const std::string& instance_name) {
  const std::string path = table_record_path(instance_name);
  const int fd = open_own_file(path, O_RDONLY);
  if (fd < 0 && errno == ENOENT) return {};
  if (fd < 0) {
    throw std::runtime_error("refusing table record " + path + ": not a plain file of this user's");
  }
  char text[256];
  const ssize_t n = read(fd, text, sizeof text - 1);
  close(fd);
  std::string segment(text, n > 0 ? static_cast<std::size_t>(n) : 0);
  while (!segment.empty() && segment.back() == '\n') segment.pop_back();
  // Only a name this user's master could have written: the rest would be a path or worse.
  if (segment.rfind("wslb." + std::to_string(geteuid()) + "." + instance_name + ".", 0) != 0 ||
      segment.find('/') != std::string::npos) {
    throw std::runtime_error("refusing table record " + path + ": '" + segment.substr(0, 80) +
                             "' is not a table name of this instance");
  }
  return segment;
}

void record_table(const std::string& instance_name, const std::string& segment) {
  const std::string path = table_record_path(instance_name);
  const std::string temporary = path + ".new";
  unlink(temporary.c_str());
  const int fd = open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  const std::string line = segment + "\n";
  const bool written =
      fd >= 0 && write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  if (fd >= 0) close(fd);
  if (!written || rename(temporary.c_str(), path.c_str()) != 0) {
    throw std::runtime_error("cannot record the table in " + path + ": " + strerror(errno));
  }
}

void forget_table(const std::string& instance_name) {
  unlink(table_record_path(instance_name).c_str());
}

bool instance_lock_held(const std::string& path) {
  const int fd = open_own_file(path, O_RDONLY);
  if (fd < 0) return false;  // never created, or not ours: no instance of ours holds it
  struct flock fl = whole_file(F_WRLCK);
  const bool held = fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
  close(fd);
  return held;
}

}  // namespace wslb::supervisor
