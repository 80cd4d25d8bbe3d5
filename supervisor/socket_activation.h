// The instance's listening sockets: handed over by systemd (socket activation: LISTEN_PID,
// LISTEN_FDS, LISTEN_FDNAMES) or bound now. Called first thing at start-up, while the master
// may still be root, so that a privileged port can be bound before the privilege drop.
#pragma once

#include <string>

#include "common/config.h"

namespace wslb::supervisor {

struct instance_sockets {
  int listener = -1;  // the client listener
  int admin = -1;     // the admin listener, -1 when --admin is off
  bool inherited = false;
};

// Takes the sockets systemd passed (when LISTEN_PID is this process): the one named "admin"
// in LISTEN_FDNAMES (or, unnamed, the second) is the admin listener, the other the client
// listener; each must be a listening TCP socket. Binds whatever was not passed. Clears the
// LISTEN_* variables. Returns false with `error`, having closed what it opened.
bool open_instance_sockets(const config& cfg, instance_sockets& out, std::string& error);

}  // namespace wslb::supervisor
