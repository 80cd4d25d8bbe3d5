#include "worker/affinity_cookie.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

namespace wslb::worker {

namespace {

// Changing this text changes every id (clients would be balanced again once).
constexpr std::string_view id_key = "wslb affinity cookie v1:";

}  // namespace

std::string affinity_id(std::string_view name, std::string_view host_port) {
  const std::string key = std::string(id_key) + std::string(name);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(host_port.data()), host_port.size(), mac, &mac_len);
  static constexpr char hex[] = "0123456789abcdef";
  std::string id;
  for (unsigned i = 0; i < 8 && i < mac_len; ++i) {
    id += hex[mac[i] >> 4];
    id += hex[mac[i] & 0xF];
  }
  return id;
}

affinity_cookie::affinity_cookie(const sticky_cookie_config& cfg,
                                 const std::vector<backend_config>& backends,
                                 std::uint64_t retired)
    : name_(cfg.name) {
  if (!enabled()) return;
  for (std::size_t i = 0; i < backends.size(); ++i) {
    const bool gone = (retired >> i) & 1u;
    ids_.push_back(gone ? std::string() : affinity_id(name_, backends[i].where.to_string()));
    std::string line = "Set-Cookie: " + name_ + "=" + ids_.back() + "; Path=/; HttpOnly; SameSite=Lax";
    if (cfg.max_age_s != 0) line += "; Max-Age=" + std::to_string(cfg.max_age_s);
    lines_.push_back(line + "\r\n");
  }
}

int affinity_cookie::backend_of(std::string_view value) const {
  for (std::size_t i = 0; i < ids_.size(); ++i) {
    if (!ids_[i].empty() && ids_[i] == value) return static_cast<int>(i);
  }
  return -1;
}

}  // namespace wslb::worker
