// What this binary is: the project's version and the linker's GNU build id (the hex of the
// ELF note, "unknown" when the binary has none). The master writes both into the table for
// itself and for each worker it forks, so `status` tells which build serves after an upgrade.
#pragma once

#include <string>

namespace wslb {

const char* binary_version();
// Hex digits of NT_GNU_BUILD_ID of the running executable, read once from its program headers.
const std::string& binary_build_id();

}  // namespace wslb
