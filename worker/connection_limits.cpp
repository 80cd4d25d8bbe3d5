#include "worker/connection_limits.h"

#include "protocol/proxy_protocol.h"
#include "worker/sticky_ring.h"

namespace wslb::worker {

namespace {

constexpr auto relaxed = std::memory_order_relaxed;

std::size_t home_of(std::uint64_t key) { return key % shm::source_slots; }

// The slot holding `key` in `row`, or source_slots.
std::size_t find(const shm::worker_row& row, std::uint64_t key) {
  for (std::size_t i = 0, at = home_of(key); i < shm::source_slots;
       ++i, at = (at + 1) % shm::source_slots) {
    const std::uint64_t k = row.sources[at].key.load(relaxed);
    if (k == key) return at;
    if (k == 0) break;  // never used: the key would have been placed here or before
  }
  return shm::source_slots;
}

}  // namespace

std::uint64_t instance_connections(const shm::table& t) {
  const std::uint32_t rows = t.header.slot_high_water.load(relaxed);
  std::uint64_t sum = 0;
  for (std::uint32_t i = 0; i < rows && i < shm::max_worker_slots; ++i) {
    sum += t.workers[i].connections.load(relaxed);
  }
  return sum;
}

std::uint64_t source_key(const sockaddr_storage& peer) {
  char ip[protocol::ip_text_max];
  const std::size_t len = protocol::format_ip(reinterpret_cast<const sockaddr*>(&peer), ip);
  const std::uint64_t h = hash_key(std::string_view(ip, len));
  return h == 0 ? 1 : h;
}

std::uint64_t source_connections(const shm::table& t, std::uint64_t key) {
  const std::uint32_t rows = t.header.slot_high_water.load(relaxed);
  std::uint64_t sum = 0;
  for (std::uint32_t i = 0; i < rows && i < shm::max_worker_slots; ++i) {
    const std::size_t at = find(t.workers[i], key);
    if (at != shm::source_slots) sum += t.workers[i].sources[at].count.load(relaxed);
  }
  return sum;
}

bool add_source(shm::worker_row& row, std::uint64_t key) {
  std::size_t at = find(row, key);
  if (at == shm::source_slots) {
    // A new key: the first slot on its probe path that is free or holds a finished source.
    // The path is only ever extended, never cut, so other keys' lookups stay correct.
    for (std::size_t i = 0, p = home_of(key); i < shm::source_slots;
         ++i, p = (p + 1) % shm::source_slots) {
      if (row.sources[p].key.load(relaxed) == 0 || row.sources[p].count.load(relaxed) == 0) {
        at = p;
        break;
      }
    }
    if (at == shm::source_slots) return false;
    row.sources[at].count.store(0, relaxed);
    row.sources[at].key.store(key, relaxed);
  }
  row.sources[at].count.store(row.sources[at].count.load(relaxed) + 1, relaxed);
  return true;
}

void remove_source(shm::worker_row& row, std::uint64_t key) {
  const std::size_t at = find(row, key);
  if (at == shm::source_slots) return;
  const std::uint64_t n = row.sources[at].count.load(relaxed);
  if (n > 0) row.sources[at].count.store(n - 1, relaxed);
}

}  // namespace wslb::worker
