// Test support for running a worker or the checker in a forked child, as the master runs them:
// a table in anonymous shared memory both processes see, and a child linked to the test by one
// end each of a SOCK_SEQPACKET pair.
#pragma once

#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <thread>

#include <doctest/doctest.h>

#include "shm/table.h"

namespace wslb::testing {

// A zeroed table with this build's header in shared memory, the test process as its master.
struct shared_table {
  shm::table* t = nullptr;
  shared_table() {
    void* p = mmap(nullptr, sizeof(shm::table), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    REQUIRE(p != MAP_FAILED);
    t = static_cast<shm::table*>(p);  // zero-filled by the kernel
    shm::initialise_header(*t);
    t->header.master_pid = getpid();
  }
  shared_table(const shared_table&) = delete;
  shared_table& operator=(const shared_table&) = delete;
  ~shared_table() { munmap(t, sizeof(shm::table)); }
};

// The child runs `body(its end of the pair)` and exits with what that returns. One still
// running when this goes out of scope is killed.
struct forked_child {
  pid_t pid = -1;
  int master_end = -1;  // the test's end: closing it is what the master's death looks like

  explicit forked_child(const std::function<int(int)>& body) {
    int pair[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) == 0);
    pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      close(pair[0]);
      _exit(body(pair[1]));
    }
    close(pair[1]);
    master_end = pair[0];
  }
  forked_child(const forked_child&) = delete;
  forked_child& operator=(const forked_child&) = delete;
  ~forked_child() {
    if (master_end >= 0) close(master_end);
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  }

  // Closes the test's end: the child sees its master go away.
  void hang_up() {
    close(master_end);
    master_end = -1;
  }

  // The exit status (128 + the signal when killed) once it exits within `timeout`; -1 if it is
  // still running then.
  int wait_exit(std::chrono::milliseconds timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < until) {
      int status = 0;
      if (waitpid(pid, &status, WNOHANG) == pid) {
        pid = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return -1;
  }
};

}  // namespace wslb::testing
