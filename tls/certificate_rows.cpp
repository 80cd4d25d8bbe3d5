#include "tls/certificate_rows.h"

#include <algorithm>
#include <cstring>

#include "shm/table_ops.h"

namespace wslb::tls {

namespace {
constexpr auto relaxed = std::memory_order_relaxed;
}

void publish_certificates(shm::tls_section& section, const std::vector<certificate_info>& certs) {
  const std::size_t n = std::min(certs.size(), shm::max_certificates);
  const std::uint32_t seq = section.certs_seq.load(relaxed);
  section.certs_seq.store(seq + 1, relaxed);  // odd: readers retry
  std::atomic_thread_fence(std::memory_order_release);
  for (std::size_t i = 0; i < n; ++i) {
    shm::certificate_row& row = section.certificates[i];
    shm::copy_fixed(row.subject, shm::subject_chars, certs[i].subject);
    shm::copy_fixed(row.key_kind, shm::key_kind_chars, certs[i].key_kind);
    row.not_after_ms.store(certs[i].not_after_ms, relaxed);
  }
  section.certificate_count.store(static_cast<std::uint32_t>(n), relaxed);
  section.certs_seq.store(seq + 2, std::memory_order_release);
}

std::vector<published_certificate> read_published_certificates(const shm::tls_section& section) {
  std::vector<published_certificate> out;
  for (int attempt = 0; attempt < 1000; ++attempt) {
    const std::uint32_t before = section.certs_seq.load(std::memory_order_acquire);
    if (before & 1u) continue;
    out.clear();
    const std::size_t n =
        std::min<std::size_t>(section.certificate_count.load(relaxed), shm::max_certificates);
    for (std::size_t i = 0; i < n; ++i) {
      const shm::certificate_row& row = section.certificates[i];
      char subject[shm::subject_chars];
      char kind[shm::key_kind_chars];
      std::memcpy(subject, row.subject, sizeof subject);
      std::memcpy(kind, row.key_kind, sizeof kind);
      subject[sizeof subject - 1] = '\0';
      kind[sizeof kind - 1] = '\0';
      out.push_back({subject, kind, row.not_after_ms.load(relaxed)});
    }
    std::atomic_thread_fence(std::memory_order_acquire);
    if (section.certs_seq.load(relaxed) == before) return out;
  }
  return {};
}

}  // namespace wslb::tls
