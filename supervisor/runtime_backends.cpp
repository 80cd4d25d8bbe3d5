#include "supervisor/runtime_backends.h"

#include <algorithm>

#include "common/parse.h"
#include "shm/layout.h"
#include "tls/client_context.h"

namespace wslb::supervisor {

std::string backend_line(const backend_config& b) {
  std::string line = b.where.to_string() + ",weight=" + std::to_string(b.weight);
  if (b.maxconn != 0) line += ",maxconn=" + std::to_string(b.maxconn);
  if (b.slowstart_ms != 0) line += ",slowstart=" + std::to_string(b.slowstart_ms) + "ms";
  if (b.tls.enabled) line += ",tls";
  if (!b.tls.sni.empty()) line += ",sni=" + b.tls.sni;
  if (!b.tls.ca_file.empty()) line += ",ca=" + b.tls.ca_file;
  return line;
}

std::string render_runtime_backends(const runtime_backend_map& records) {
  std::string out;
  for (const auto& [address, r] : records) {
    out += std::string(r.added ? "added" : "removed") + "\t" + address + "\t" + r.line + "\n";
  }
  return out;
}

std::string parse_runtime_backend(const std::vector<std::string>& fields,
                                  runtime_backend_map& records) {
  if (fields.size() != 3 || (fields[0] != "added" && fields[0] != "removed")) {
    return "expected 'added' or 'removed', address, line separated by tabs";
  }
  const std::string& address = fields[1];
  if (address.empty() || fields[2].rfind(address + ",", 0) != 0) {
    return "the line '" + fields[2] + "' is not that of '" + address + "'";
  }
  records[address] = runtime_backend{fields[0] == "added", fields[2]};
  return {};
}

const backend_config* find_backend(const config& cfg, const std::string& address) {
  for (const auto& b : cfg.backends) {
    if (b.where.to_string() == address) return &b;
  }
  return nullptr;
}

std::vector<std::string> merge_runtime_backends(const runtime_backend_map& records,
                                                config& cfg) {
  std::vector<std::string> dropped;
  for (const auto& [address, r] : records) {
    if (r.added) continue;
    const backend_config* configured = find_backend(cfg, address);
    if (configured == nullptr) {
      dropped.push_back(address + " (its removal: no longer configured)");
    } else if (backend_line(*configured) != r.line) {
      dropped.push_back(address + " (its removal: the line changed: " + r.line + " -> " +
                        backend_line(*configured) + ")");
    } else if (cfg.backends.size() == 1) {
      dropped.push_back(address + " (its removal: it would leave no backend)");
    } else {
      cfg.backends.erase(cfg.backends.begin() + (configured - cfg.backends.data()));
    }
  }
  for (const auto& [address, r] : records) {
    if (!r.added) continue;
    if (const backend_config* configured = find_backend(cfg, address)) {
      dropped.push_back(address + " (its addition: now configured as " +
                        backend_line(*configured) + ")");
      continue;
    }
    backend_config b;
    std::string error;
    if (!parse_backend(r.line, b, error) || !(error = tls::load_backend_tls(cfg, b)).empty()) {
      dropped.push_back(address + " (its addition: " + error + ")");
    } else if (cfg.backends.size() >= shm::max_backends) {
      dropped.push_back(address + " (its addition: already " +
                        std::to_string(shm::max_backends) + " backends)");
    } else {
      cfg.backends.push_back(b);
    }
  }
  return dropped;
}

}  // namespace wslb::supervisor
