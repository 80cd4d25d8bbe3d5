// Mapping the shared-memory table into a process. The master creates it once at start-up;
// workers inherit the mapping across fork(); the CLI and the checker attach by name.
#pragma once

#include <memory>
#include <stdexcept>
#include <string>

#include "shm/layout.h"

namespace wslb::shm {

// A start-up failure around the table: cannot create, cannot map, wrong layout. The message
// says what differs, for the operator.
struct table_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// attach() found no segment of that name (its instance is not running).
struct table_missing : table_error {
  using table_error::table_error;
};

enum class access { read_only, read_write };

// A fresh name for the POSIX shared-memory object of instance `instance_name` of the calling
// user ("/dev/shm/<this>" = "wslb.<euid>.<name>.<16 random hex digits>"). Nobody can guess it,
// so nobody can plant a segment there first; the master records it in the instance's private
// runtime directory (supervisor/instance_files.h), where the CLI finds it.
std::string new_segment_name(const std::string& instance_name);

// Whether a segment with this owner, mode and size may be trusted by the calling user: "" when
// it is this user's, 0600 and exactly one table, else what is wrong ("owned by uid 1001, ...").
// Pure but for geteuid(); attach() applies it to the open segment.
std::string check_segment_owner(std::uint32_t uid, std::uint32_t mode, std::uint64_t size);
// The owner and mode half of check_segment_owner, for a segment of any size (another layout's).
std::string check_segment_private(std::uint32_t uid, std::uint32_t mode);

// A mapped table. Move-only; unmaps on destruction (the segment itself stays until remove()).
class table_mapping {
 public:
  // Creates segment `segment` (new_segment_name; never an existing one), mode 0600, and
  // initialises it: zeroed, then the header's magic, version and size. Master only, at
  // start-up. Throws table_error.
  static table_mapping create(const std::string& segment);
  // Maps segment `segment` after checking that this user owns it, that it is private to them
  // and one table long (check_segment_owner), then checks magic, version and size. Throws
  // table_error saying "no table" when there is no such segment, and what is wrong otherwise.
  static table_mapping attach(const std::string& segment, access mode);
  // Maps the table open at descriptor `fd` (an upgrading master's predecessor passes it)
  // after the same checks as attach(): owner, mode, size, magic, version. Does not take
  // `fd`: the mapping keeps a duplicate. Throws table_error saying what is wrong.
  static table_mapping attach_descriptor(int fd, access mode);
  // The layout version in the header of the table open at `fd`, read without mapping it (a
  // table of another layout is not mapped as ours). Throws table_error when `fd` is not this
  // user's private segment or holds no wslb table.
  static std::uint32_t layout_version_at(int fd);
  // Removes segment `segment`; true if it existed. Mappings already made stay valid.
  static bool remove(const std::string& segment);

  // Checks a header image against this build's layout; empty string when it matches, else
  // what differs. Pure: used by attach() and by the unit tests on a plain byte buffer.
  static std::string check_header(const void* bytes, std::size_t size);

  table& get() const { return *table_; }
  // The segment's descriptor (close-on-exec), open as long as the mapping: what an upgrade
  // passes to the next master.
  int descriptor() const { return fd_; }
  table* operator->() const { return table_; }

  table_mapping(table_mapping&&) noexcept;
  table_mapping& operator=(table_mapping&&) noexcept;
  ~table_mapping();

 private:
  struct region;
  table_mapping(std::unique_ptr<region> r, int fd);
  std::unique_ptr<region> region_;
  table* table_ = nullptr;
  int fd_ = -1;
};

// Writes the header fields of a freshly zeroed table image. Used by create() and tests.
void initialise_header(table& t);

}  // namespace wslb::shm
