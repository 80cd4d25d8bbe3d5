// Rendering `wslb status` from a table image: a readable table for people and a JSON document
// whose keys are a stable contract for other tools (add keys freely, never rename or drop).
// Pure: reads the table, writes a string; the unit tests render a plain byte-buffer table.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "shm/layout.h"

namespace wslb::cli {

std::string render_status_json(const shm::table& t, std::int64_t now_unix_ms);
std::string render_status_text(const shm::table& t, std::int64_t now_unix_ms);

const char* to_string(shm::worker_state s);
// "ready", "drain", "maint": the operator's state of a backend.
const char* to_string(shm::admin_state s);

// `raw` with every byte outside printable ASCII (and the backslash) written as \xNN: how status
// shows any text it read from the table.
std::string printable_text(std::string_view raw);

// A string field of the table as it may be shown: at most `capacity` bytes (a field without its
// NUL stops at its end), bytes outside printable ASCII as \xNN, so that no table, forged or
// torn, can put terminal escapes or unbounded text on the operator's screen.
template <std::size_t capacity>
std::string shown(const char (&field)[capacity]) {
  return printable_text(std::string_view(field, strnlen(field, capacity)));
}

}  // namespace wslb::cli
