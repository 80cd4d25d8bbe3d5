// The channel between the master and each child it forks (workers and the health checker): a
// SOCK_SEQPACKET socketpair, one byte per message. EOF on it means the other side is gone: a
// child then exits, the master reaps it. Both sides include this header and nothing else of
// each other's.
#pragma once

namespace wslb::child_channel {

inline constexpr char msg_ready = 'R';  // worker -> master: accepting now
inline constexpr char msg_drain = 'D';  // master -> child: stop accepting, drain, then exit
inline constexpr char msg_stop = 'S';   // master -> child: close everything now and exit
// master -> old worker: stop accepting, pass established tunnels to the running workers of the
// newest generation (their handover sockets), drain what cannot move, then exit
inline constexpr char msg_handover = 'H';
inline constexpr char msg_reopen_logs = 'L';  // master -> worker: reopen the access log (SIGUSR1)

}  // namespace wslb::child_channel
