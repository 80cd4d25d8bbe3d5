#include "common/build_info.h"

#include <elf.h>
#include <link.h>

#include <cstring>

namespace wslb {

namespace {

// Walks the main executable's PT_NOTE segments (the first object dl_iterate_phdr reports)
// for the GNU build-id note.
int find_build_id(dl_phdr_info* info, std::size_t, void* data) {
  auto* out = static_cast<std::string*>(data);
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_NOTE) continue;
    const char* at = reinterpret_cast<const char*>(info->dlpi_addr + ph.p_vaddr);
    const char* end = at + ph.p_memsz;
    while (at + sizeof(ElfW(Nhdr)) <= end) {
      ElfW(Nhdr) note;
      std::memcpy(&note, at, sizeof note);
      const char* name = at + sizeof note;
      const char* desc = name + ((note.n_namesz + 3) & ~3u);
      if (note.n_type == NT_GNU_BUILD_ID && note.n_namesz == 4 &&
          std::memcmp(name, "GNU", 4) == 0 && desc + note.n_descsz <= end) {
        static const char hex[] = "0123456789abcdef";
        for (std::size_t b = 0; b < note.n_descsz; ++b) {
          const auto byte = static_cast<unsigned char>(desc[b]);
          out->push_back(hex[byte >> 4]);
          out->push_back(hex[byte & 15]);
        }
        return 1;
      }
      at = desc + ((note.n_descsz + 3) & ~3u);
    }
  }
  return 1;  // only the executable itself
}

}  // namespace

const char* binary_version() { return WSLB_VERSION; }

const std::string& binary_build_id() {
  static const std::string id = [] {
    std::string s;
    dl_iterate_phdr(find_build_id, &s);
    return s.empty() ? std::string("unknown") : s;
  }();
  return id;
}

}  // namespace wslb
