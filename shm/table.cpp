#include "shm/table.h"

#include <boost/interprocess/detail/os_file_functions.hpp>
#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>
#include <sys/random.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>

namespace bip = boost::interprocess;

namespace wslb::shm {

struct table_mapping::region {
  bip::mapped_region mapped;
};

namespace {

// An open descriptor as Boost.Interprocess maps one (the MemoryMappable concept).
struct open_segment {
  int fd;
  bip::mapping_handle_t get_mapping_handle() const {
    return bip::ipcdetail::mapping_handle_from_file_handle(fd);
  }
};

}  // namespace

std::string new_segment_name(const std::string& instance_name) {
  unsigned char random[8] = {};
  if (getrandom(random, sizeof random, 0) != static_cast<ssize_t>(sizeof random)) {
    throw table_error(std::string("cannot name a shared table: getrandom: ") + strerror(errno));
  }
  char hex[2 * sizeof random + 1];
  for (std::size_t i = 0; i < sizeof random; ++i) {
    std::snprintf(hex + 2 * i, 3, "%02x", random[i]);
  }
  return "wslb." + std::to_string(geteuid()) + "." + instance_name + "." + hex;
}

namespace {

std::string octal_mode(mode_t mode) {
  char text[8];
  std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode & 07777));
  return text;
}

}  // namespace

std::string check_segment_private(std::uint32_t uid, std::uint32_t mode) {
  const std::uint32_t me = geteuid();
  if (uid != me) {
    return "owned by uid " + std::to_string(uid) + ", not by this user (uid " +
           std::to_string(me) + ")";
  }
  if ((mode & 0077) != 0) {
    return "open to group or others (mode " + octal_mode(mode) + ", expected 0600)";
  }
  return {};
}

std::string check_segment_owner(std::uint32_t uid, std::uint32_t mode, std::uint64_t size) {
  if (std::string untrusted = check_segment_private(uid, mode); !untrusted.empty()) {
    return untrusted;
  }
  if (size != sizeof(table)) {
    return "of " + std::to_string(size) + " bytes, but this wslb's table is " +
           std::to_string(sizeof(table));
  }
  return {};
}

void initialise_header(table& t) {
  t.header.magic = table_magic;
  t.header.version = layout_version;
  t.header.flags = 0;
  t.header.size = sizeof(table);
}

std::string table_mapping::check_header(const void* bytes, std::size_t size) {
  if (size < sizeof(table_header)) {
    return "segment is " + std::to_string(size) + " bytes, smaller than a table header";
  }
  table_header h;
  // The header's leading plain fields are what we compare; copy them out byte-wise because
  // the image may be a foreign or corrupt one.
  std::memcpy(&h.magic, bytes, sizeof h.magic);
  std::memcpy(&h.version, static_cast<const char*>(bytes) + offsetof(table_header, version),
              sizeof h.version);
  std::memcpy(&h.size, static_cast<const char*>(bytes) + offsetof(table_header, size),
              sizeof h.size);
  if (h.magic != table_magic) return "bad magic: this is not a wslb table";
  if (h.version != layout_version) {
    return "layout version " + std::to_string(h.version) + " but this wslb reads version " +
           std::to_string(layout_version) + " (mixed wslb builds?)";
  }
  if (h.size != sizeof(table) || size < sizeof(table)) {
    return "table size " + std::to_string(h.size) + " (segment " + std::to_string(size) +
           " bytes) but this wslb expects " + std::to_string(sizeof(table));
  }
  return {};
}

table_mapping::table_mapping(std::unique_ptr<region> r, int fd)
    : region_(std::move(r)), table_(static_cast<table*>(region_->mapped.get_address())),
      fd_(fd) {}
table_mapping::table_mapping(table_mapping&& other) noexcept
    : region_(std::move(other.region_)), table_(other.table_), fd_(other.fd_) {
  other.table_ = nullptr;
  other.fd_ = -1;
}
table_mapping& table_mapping::operator=(table_mapping&& other) noexcept {
  if (this == &other) return *this;
  if (fd_ >= 0) close(fd_);
  region_ = std::move(other.region_);
  table_ = other.table_;
  fd_ = other.fd_;
  other.table_ = nullptr;
  other.fd_ = -1;
  return *this;
}
table_mapping::~table_mapping() {
  if (fd_ >= 0) close(fd_);
}

namespace {

// A duplicate of the segment's descriptor that outlives Boost's object, close-on-exec.
int keep_descriptor(int fd, const std::string& what) {
  const int kept = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (kept < 0) throw table_error("cannot keep the descriptor of " + what + ": " + strerror(errno));
  return kept;
}

}  // namespace

table_mapping table_mapping::create(const std::string& name) {
  try {
    bip::permissions owner_only(0600);
    bip::shared_memory_object segment(bip::create_only, name.c_str(), bip::read_write,
                                      owner_only);
    segment.truncate(sizeof(table));
    auto r = std::make_unique<region>(region{bip::mapped_region(segment, bip::read_write)});
    void* at = r->mapped.get_address();
    std::memset(at, 0, sizeof(table));
    // Zeroed memory is a valid image of every atomic in the table (all lock-free, no
    // hidden state); placement-new makes the object's lifetime official.
    auto* t = new (at) table;
    initialise_header(*t);
    const int fd = keep_descriptor(segment.get_mapping_handle().handle, "/dev/shm/" + name);
    return table_mapping(std::move(r), fd);
  } catch (const bip::interprocess_exception& e) {
    throw table_error("cannot create shared table /dev/shm/" + name + ": " + e.what());
  }
}

table_mapping table_mapping::attach(const std::string& name, access mode) {
  const auto bip_mode = mode == access::read_only ? bip::read_only : bip::read_write;
  // Looked at before opening too: a segment of another user's may not even open for us, and
  // the operator should hear whose it is rather than "Permission denied".
  struct stat before{};
  if (stat(("/dev/shm/" + name).c_str(), &before) == 0) {
    const std::string untrusted = check_segment_owner(before.st_uid, before.st_mode,
                                                      static_cast<std::uint64_t>(before.st_size));
    if (!untrusted.empty()) {
      throw table_error("refusing table /dev/shm/" + name + ": it is " + untrusted);
    }
  }
  try {
    bip::shared_memory_object segment(bip::open_only, name.c_str(), bip_mode);
    // Checked on the open descriptor, before mapping: a short segment would fault on access.
    struct stat st{};
    if (fstat(segment.get_mapping_handle().handle, &st) != 0) {
      throw table_error("cannot inspect table /dev/shm/" + name + ": " + strerror(errno));
    }
    const std::string untrusted = check_segment_owner(st.st_uid, st.st_mode,
                                                      static_cast<std::uint64_t>(st.st_size));
    if (!untrusted.empty()) {
      throw table_error("refusing table /dev/shm/" + name + ": it is " + untrusted);
    }
    auto r = std::make_unique<region>(region{bip::mapped_region(segment, bip_mode)});
    std::string mismatch = check_header(r->mapped.get_address(), r->mapped.get_size());
    if (!mismatch.empty()) {
      throw table_error("table /dev/shm/" + name + " does not match: " + mismatch);
    }
    const int fd = keep_descriptor(segment.get_mapping_handle().handle, "/dev/shm/" + name);
    return table_mapping(std::move(r), fd);
  } catch (const bip::interprocess_exception& e) {
    if (e.get_error_code() == bip::not_found_error) {
      throw table_missing("no table /dev/shm/" + name);
    }
    throw table_error("cannot map table /dev/shm/" + name + ": " + e.what());
  }
}

table_mapping table_mapping::attach_descriptor(int fd, access mode) {
  const std::string what = "the table at descriptor " + std::to_string(fd);
  struct stat st{};
  if (fstat(fd, &st) != 0) throw table_error("cannot inspect " + what + ": " + strerror(errno));
  const std::string untrusted =
      check_segment_owner(st.st_uid, st.st_mode, static_cast<std::uint64_t>(st.st_size));
  if (!untrusted.empty()) throw table_error("refusing " + what + ": it is " + untrusted);
  try {
    const auto bip_mode = mode == access::read_only ? bip::read_only : bip::read_write;
    auto r = std::make_unique<region>(region{bip::mapped_region(open_segment{fd}, bip_mode)});
    const std::string mismatch = check_header(r->mapped.get_address(), r->mapped.get_size());
    if (!mismatch.empty()) throw table_error(what + " does not match: " + mismatch);
    return table_mapping(std::move(r), keep_descriptor(fd, what));
  } catch (const bip::interprocess_exception& e) {
    throw table_error("cannot map " + what + ": " + e.what());
  }
}

std::uint32_t table_mapping::layout_version_at(int fd) {
  const std::string what = "the table at descriptor " + std::to_string(fd);
  struct stat st{};
  if (fstat(fd, &st) != 0) throw table_error("cannot inspect " + what + ": " + strerror(errno));
  // The size is the layout's own: only owner and mode are this build's to judge here.
  if (const std::string untrusted = check_segment_private(st.st_uid, st.st_mode);
      !untrusted.empty()) {
    throw table_error("refusing " + what + ": it is " + untrusted);
  }
  table_header h{};
  if (pread(fd, &h.magic, sizeof h.magic, 0) != static_cast<ssize_t>(sizeof h.magic) ||
      pread(fd, &h.version, sizeof h.version, offsetof(table_header, version)) !=
          static_cast<ssize_t>(sizeof h.version)) {
    throw table_error(what + " is too short to be a wslb table");
  }
  if (h.magic != table_magic) throw table_error(what + ": bad magic: this is not a wslb table");
  return h.version;
}

bool table_mapping::remove(const std::string& name) {
  return bip::shared_memory_object::remove(name.c_str());
}

}  // namespace wslb::shm
