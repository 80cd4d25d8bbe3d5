// What the access log keeps of a connection as text: its client and its current request, as
// sent. Held by a worker's access record (worker/access_record.h) and carried along when a
// tunnel is handed over to a new generation (common/handover_format.h).
#pragma once

#include <array>
#include <string>

namespace wslb {

struct access_text {
  std::string client;         // "ip:port" of the peer, "[v6]:port"
  std::string forwarded_for;  // the X-Forwarded-For a trusted proxy sent
  std::string method;
  std::string path;
  std::string host;
  std::string user_agent;

  // Every field, in the order the handover record carries them.
  std::array<std::string*, 6> fields() {
    return {&client, &forwarded_for, &method, &path, &host, &user_agent};
  }
  std::array<const std::string*, 6> fields() const {
    return {&client, &forwarded_for, &method, &path, &host, &user_agent};
  }
  // Forgets the request (the next one on a kept-alive connection); the client stays.
  void clear_request() {
    forwarded_for.clear();
    method.clear();
    path.clear();
    host.clear();
    user_agent.clear();
  }
};

}  // namespace wslb
