// The certificates of the running configuration as the table shows them to `status`: subject,
// key kind and expiry, one row each. The master writes them at start and when a reload commits.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "shm/layout.h"
#include "tls/certificate.h"

namespace wslb::tls {

// Master only: replaces the rows with `certs` (at most shm::max_certificates).
void publish_certificates(shm::tls_section& section, const std::vector<certificate_info>& certs);

struct published_certificate {
  std::string subject;
  std::string key_kind;
  std::int64_t not_after_ms = 0;
};

// Any process: a consistent copy of the rows (empty when TLS is off).
std::vector<published_certificate> read_published_certificates(const shm::tls_section& section);

}  // namespace wslb::tls
