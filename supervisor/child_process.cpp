#include "supervisor/child_process.h"

#include <dirent.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <vector>

namespace wslb::supervisor {

namespace {

// Closes every descriptor above stderr that is not in `keep`. /proc/self/fd lists them; the
// directory's own fd is skipped while iterating and closed with it.
void close_other_fds(std::initializer_list<int> keep) {
  std::vector<int> to_close;
  if (DIR* d = opendir("/proc/self/fd")) {
    const int own = dirfd(d);
    while (dirent* e = readdir(d)) {
      const int fd = std::atoi(e->d_name);
      if (fd > 2 && fd != own && std::find(keep.begin(), keep.end(), fd) == keep.end()) {
        to_close.push_back(fd);
      }
    }
    closedir(d);
  }
  for (int fd : to_close) close(fd);
}

void reset_signals() {
  // libuv's handlers in the master write to the master loop's pipe; the child must not run them.
  for (int sig : {SIGCHLD, SIGHUP, SIGUSR1, SIGUSR2, SIGQUIT, SIGTERM, SIGINT, SIGPIPE}) {
    signal(sig, SIG_DFL);
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
}

}  // namespace

pid_t fork_child(std::initializer_list<int> keep_fds, const std::function<int()>& body) {
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid != 0) return pid;
  reset_signals();
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  // The master may have died between fork() and prctl(): then nobody would signal us.
  if (getppid() != parent) _exit(1);
  close_other_fds(keep_fds);
  _exit(body());
}

}  // namespace wslb::supervisor
