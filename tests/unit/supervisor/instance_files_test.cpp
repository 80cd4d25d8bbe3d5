#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <stdexcept>
#include <string>

#include "supervisor/instance_files.h"

using namespace wslb::supervisor;

namespace {
// A private runtime directory for one test, removed with what is in it.
struct temp_runtime_dir {
  std::string path = "/tmp/wslb-instance-files-test-" + std::to_string(getpid());
  temp_runtime_dir() {
    mkdir(path.c_str(), 0700);
    setenv("WSLB_RUNTIME_DIR", path.c_str(), 1);
  }
  ~temp_runtime_dir() {
    unlink((path + "/t.lock").c_str());
    unlink((path + "/t.table").c_str());
    rmdir(path.c_str());
    unsetenv("WSLB_RUNTIME_DIR");
  }
};
}  // namespace

TEST_CASE("instance_files.the_lock_tells_liveness_without_being_taken") {
  temp_runtime_dir dir;
  const std::string lock = lock_file_path("t");
  CHECK_FALSE(instance_lock_held(lock));  // no file yet
  const int fd = take_instance_lock(lock);
  REQUIRE(fd >= 0);
  CHECK(instance_lock_held(lock));
  CHECK(instance_lock_held(lock));    // looking does not take it...
  CHECK(take_instance_lock(lock) == -1);  // ...and a second master is refused
  struct stat before{};
  REQUIRE(stat(lock.c_str(), &before) == 0);
  close(fd);  // what the kernel does when the master dies
  CHECK_FALSE(instance_lock_held(lock));
  const int again = take_instance_lock(lock);
  REQUIRE(again >= 0);
  struct stat after{};
  REQUIRE(stat(lock.c_str(), &after) == 0);
  CHECK(after.st_ino == before.st_ino);  // the same file, never replaced
  close(again);
}

TEST_CASE("instance_files.refuses_a_lock_file_that_is_a_link") {
  temp_runtime_dir dir;
  const std::string lock = lock_file_path("t");
  REQUIRE(symlink("/etc/passwd", lock.c_str()) == 0);
  CHECK_THROWS_WITH_AS(take_instance_lock(lock),
                       ("refusing lock file " + lock + ": not a plain file of this user's").c_str(),
                       std::runtime_error);
  CHECK_FALSE(instance_lock_held(lock));
}

TEST_CASE("instance_files.the_table_is_found_through_its_private_record") {
  temp_runtime_dir dir;
  CHECK(recorded_table("t") == "");  // never recorded: not running
  const std::string segment = "wslb." + std::to_string(geteuid()) + ".t.0123456789abcdef";
  record_table("t", segment);
  CHECK(recorded_table("t") == segment);
  record_table("t", segment + "0");  // a later master replaces it
  CHECK(recorded_table("t") == segment + "0");
  forget_table("t");
  CHECK(recorded_table("t") == "");
  // A record naming anything but this user's table of this instance is refused.
  record_table("t", "../../etc/passwd");
  CHECK_THROWS_AS(recorded_table("t"), std::runtime_error);
  record_table("t", "wslb.99999.t.0123456789abcdef");
  CHECK_THROWS_AS(recorded_table("t"), std::runtime_error);
}
