// The affinity cookie of --sticky-cookie NAME[,max-age=DURATION]: which backend a client's
// requests stick to, named by an opaque id.
//
// The id of a backend is the first 16 hex digits of HMAC-SHA256(key, HOST:PORT), HOST:PORT the
// backend as configured (a name stays a name) and the key fixed text plus the cookie name. It
// depends on nothing else, so every worker, a restarted or reloaded instance and other
// instances configured alike give a backend the same id; it does not show the address. It is
// not a secret: whoever can guess the HOST:PORT texts can compute the ids, and a client can
// always choose among the backends by sending one of their ids (as with nginx's sticky cookie).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/config.h"

namespace wslb::worker {

// The id of backend `host_port` under cookie `name` (16 lower-case hex digits).
std::string affinity_id(std::string_view name, std::string_view host_port);

class affinity_cookie {
 public:
  // Off when cfg.name is empty. One id and one Set-Cookie line per configured backend, made
  // when the worker starts and again when its backends change at run time; a backend in
  // `retired` (bit i = index i, see worker/backend_set.h) gets no id, so no cookie names it.
  affinity_cookie(const sticky_cookie_config& cfg, const std::vector<backend_config>& backends,
                  std::uint64_t retired = 0);

  bool enabled() const { return !name_.empty(); }
  const std::string& name() const { return name_; }

  // The configured index of the backend whose id is `value`, or -1 (unknown, or off).
  int backend_of(std::string_view value) const;

  // "Set-Cookie: NAME=ID; Path=/; HttpOnly; SameSite=Lax[; Max-Age=N]\r\n" for backend `index`.
  std::string_view set_cookie_line(std::size_t index) const { return lines_[index]; }

 private:
  std::string name_;
  std::vector<std::string> ids_;
  std::vector<std::string> lines_;
};

}  // namespace wslb::worker
