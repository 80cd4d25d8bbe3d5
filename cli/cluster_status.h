// The cluster part of `wslb status`: this node's link to Redis, the other nodes it counts and
// how old their figures are. Pure, like status_view: reads the table, writes a string.
#pragma once

#include <cstdint>
#include <string>

#include "shm/layout.h"

namespace wslb::cli {

// The JSON object under "cluster": {"enabled":false} without --cluster.
std::string render_cluster_json(const shm::table& t, std::int64_t now_unix_ms);
// The CLUSTER section of the text view, "" without --cluster.
std::string render_cluster_text(const shm::table& t, std::int64_t now_unix_ms);

// Whether this instance runs with --cluster (the master wrote a node id).
bool cluster_enabled(const shm::table& t);

const char* to_string(shm::cluster_link link);

}  // namespace wslb::cli
