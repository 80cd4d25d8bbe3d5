#include "worker/handover_receive.h"

#include <errno.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <new>
#include <vector>

#include "common/handover_format.h"
#include "common/log.h"
#include "shm/table_ops.h"
#include "worker/access_record.h"
#include "worker/backend_set.h"
#include "worker/connection_limits.h"
#include "worker/row_counters.h"
#include "worker/session.h"

namespace wslb::worker {

namespace {

constexpr auto relaxed = std::memory_order_relaxed;
constexpr std::uint8_t bit(direction d) { return static_cast<std::uint8_t>(1u << d); }

struct sender_link {
  uv_poll_t poll;
  int fd = -1;
  // A worker of the predecessor's table (an upgrade to another layout): its tunnels are
  // still counted in this table's inherited_active until they arrive here.
  bool predecessor = false;
};

}  // namespace

struct handover_receiver {
  uv_poll_t listen_poll{};
  int listen_fd = -1;
  std::string path;
  std::vector<sender_link*> links;
  // One message at a time, the largest record plus a byte to notice a larger one.
  std::unique_ptr<char[]> buffer{new char[handover::max_record_bytes + 1]};
};

namespace {

void close_fds(const std::vector<int>& fds) {
  for (int fd : fds) close(fd);
}

void drop_link(handover_receiver& r, sender_link* link) {
  std::erase(r.links, link);
  uv_close(reinterpret_cast<uv_handle_t*>(&link->poll), [](uv_handle_t* h) {
    auto* l = static_cast<sender_link*>(h->data);
    close(l->fd);
    delete l;
  });
}

// Only an older worker of this instance may hand tunnels over: its pid is in a worker row of
// our table with a lower generation, and it runs as this user. `predecessor` says whether that
// row is a predecessor table's worker.
bool trusted_sender(const worker_context& ctx, int fd, pid_t& pid, bool& predecessor) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return false;
  pid = cred.pid;
  if (cred.uid != geteuid() || cred.pid <= 0) return false;
  for (std::size_t i = 0; i < shm::max_worker_slots; ++i) {
    const shm::worker_row& w = ctx.table.workers[i];
    if (w.pid.load(relaxed) == cred.pid && w.generation.load(relaxed) < ctx.generation) {
      predecessor = w.state.load(relaxed) == shm::worker_state::predecessor;
      return true;
    }
  }
  return false;
}

// The configured index of the backend the sender relayed to, or -1 when this generation's
// configuration does not have it at that row.
int backend_index_of(const worker_context& ctx, const handover::tunnel_record& rec) {
  for (std::size_t i = 0; i < ctx.cfg.backends.size(); ++i) {
    if (ctx.cfg.backends[i].row == rec.backend_row &&
        ctx.backend_names[i] == rec.backend_address) {
      return static_cast<int>(i);
    }
  }
  return -1;
}

// Continues a tunnel from its record: a session over the two received descriptors, in the
// state the sender left it, with its unwritten bytes written (or queued) first. False when the
// record does not fit this worker (the caller closes the descriptors).
bool adopt_tunnel(worker_context& ctx, const handover::tunnel_record& rec, int client_fd,
                  int backend_fd, bool from_predecessor, std::string& why) {
  int index = backend_index_of(ctx, rec);
  if (index < 0) {
    // A backend added at run time (`wslb backend add`) that this worker has not taken yet.
    follow_backend_set(ctx);
    index = backend_index_of(ctx, rec);
  }
  if (index < 0) {
    why = "backend " + rec.backend_address + " is not in this generation's configuration";
    return false;
  }
  if (rec.close_cause >= shm::close_causes) {
    why = "close cause " + std::to_string(rec.close_cause) + " out of range";
    return false;
  }
  const bool watched = rec.flags & (handover::flag_upgraded | handover::flag_sniffing);
  if (watched && rec.watch.size() != sizeof(stream_watch)) {
    why = "stream watch of " + std::to_string(rec.watch.size()) + " bytes";
    return false;
  }
  void* mem = std::malloc(sizeof(session));
  if (mem == nullptr) {
    why = "out of memory";
    return false;
  }
  session* s = new (mem) session{};
  // Without a domain uv_tcp_init creates no socket and cannot fail.
  uv_tcp_init(&ctx.loop, &s->client);
  uv_tcp_init(&ctx.loop, &s->backend);
  s->client.data = s;
  s->backend.data = s;
  s->open_handles = 2;
  s->backend_open = true;
  ++ctx.live_sessions;
  counter_add(ctx.row.connections, 1);
  // handover_lost compares what this table's workers sent with what they took in; a
  // predecessor table's worker counted its sending in its own table.
  if (!from_predecessor) counter_add(ctx.row.handed_in, 1);
  link_session(ctx, s);
  s->at = phase::tunnel;
  s->kind = static_cast<connection_kind>(rec.kind);
  s->backend_index = static_cast<std::uint16_t>(index);
  s->last_status = rec.last_status;
  s->requests = rec.requests;
  s->eof_mask = rec.eof_mask;
  s->shut_sent_mask = rec.shut_sent_mask;
  s->shut_done_mask = rec.shut_done_mask;
  s->finishing_mask = rec.finishing_mask;
  s->done_mask = rec.done_mask;
  s->upgraded = rec.flags & handover::flag_upgraded;
  s->sniffing = rec.flags & handover::flag_sniffing;
  if (watched) std::memcpy(static_cast<void*>(&s->watch), rec.watch.data(), sizeof s->watch);
  const std::size_t backend_row = ctx.cfg.backends[index].row;
  counter_add(ctx.row.backends[backend_row].active, 1);
  // Counted here now, no longer as the predecessor's.
  if (from_predecessor) shm::inherited_take_one(ctx.table, backend_row);
  s->counted = true;
  // The source's count moves with it (the sender's row dropped it as it let go); a full source
  // table here only means the limit cannot see this one.
  if (rec.source_key != 0 && add_source(ctx.row, rec.source_key)) s->source_key = rec.source_key;
  const auto now = static_cast<std::uint32_t>(uv_now(&ctx.loop));
  s->last_active_ms = now - rec.idle_ms;
  s->has_sticky_key = (rec.flags & handover::flag_sticky_key) != 0;
  s->sticky_key = rec.sticky_key;
  s->pinned = (rec.flags & handover::flag_pinned) != 0;
  // Its lifetime, like its age, counts from the accept in the old worker.
  s->accepted_ns = uv_hrtime() - std::uint64_t{rec.age_ms} * 1'000'000;
  s->cause_noted = (rec.flags & handover::flag_cause_noted) != 0;
  s->cause = static_cast<shm::close_cause>(rec.close_cause);
  s->client_close_code = rec.client_close_code;
  if (rec.flags & handover::flag_graceful) {
    s->graceful = true;
    ++ctx.graceful_sessions;
    set_close_deadline(s, rec.close_in_ms);
  }
  // From here on a failure closes the session (and the descriptors with it).
  if (uv_tcp_open(&s->client, client_fd) != 0 || uv_tcp_open(&s->backend, backend_fd) != 0) {
    close_session(s);
    return true;
  }
  adopt_access_record(s, rec, client_fd);
  for (direction d : {to_backend, to_client}) {
    const std::string& bytes = rec.unwritten[d];
    if (!bytes.empty()) relay_bytes(s, d, bytes.data(), bytes.size());
    if (s->dead) return true;
  }
  for (direction d : {to_backend, to_client}) {
    // Read where the sender read: unless that side finished or a write towards d is queued.
    if (!(s->eof_mask & bit(d)) && s->pending[d] == nullptr && !set_reading(s, d, true)) {
      close_session(s);
      return true;
    }
  }
  return true;
}

// One message: a record and its two descriptors.
void take_message(worker_context& ctx, handover_receiver& r, sender_link* link) {
  for (;;) {
    iovec iov{r.buffer.get(), handover::max_record_bytes + 1};
    alignas(cmsghdr) char control[CMSG_SPACE(4 * sizeof(int))];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    const ssize_t n = recvmsg(link->fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) {
      drop_link(r, link);  // the sender finished (or died)
      return;
    }
    std::vector<int> fds;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (std::size_t i = 0; i < count; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        fds.push_back(fd);
      }
    }
    std::string why;
    handover::decode_error error;
    std::optional<handover::tunnel_record> rec;
    if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
      why = "message truncated";
    } else if (fds.size() != 2) {
      why = std::to_string(fds.size()) + " descriptors instead of 2";
    } else if (!(rec = handover::decode_record(std::string_view(r.buffer.get(), n), error))) {
      why = error.why;
    } else if (ctx.phase == worker_phase::stopping) {
      why = "this worker is stopping";
    } else if (adopt_tunnel(ctx, *rec, fds[0], fds[1], link->predecessor, why)) {
      continue;
    }
    // Not taken: the connection is closed here, and the table counts it as lost.
    log_line(ctx.who, "handover: refused a tunnel: %s", why.c_str());
    close_fds(fds);
  }
}

void on_link_readable(uv_poll_t* poll, int status, int) {
  worker_context& ctx = worker_context::of(poll->loop);
  auto* link = static_cast<sender_link*>(poll->data);
  if (status < 0) {
    drop_link(*ctx.receiver, link);
    return;
  }
  take_message(ctx, *ctx.receiver, link);
}

void on_listen_readable(uv_poll_t* poll, int status, int) {
  worker_context& ctx = worker_context::of(poll->loop);
  handover_receiver& r = *ctx.receiver;
  if (status < 0) return;
  for (;;) {
    const int fd = accept4(r.listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;  // EAGAIN, or out of descriptors: the sender's connect then fails
    pid_t pid = 0;
    bool predecessor = false;
    if (!trusted_sender(ctx, fd, pid, predecessor)) {
      log_line(ctx.who, "handover: refused a connection from pid %d (not an older worker of "
               "this instance)", static_cast<int>(pid));
      close(fd);
      continue;
    }
    const std::string hello = handover::encode(handover::hello{handover::format_version,
                                                               ctx.generation});
    auto* link = new sender_link{};
    link->fd = fd;
    link->predecessor = predecessor;
    if (send(fd, hello.data(), hello.size(), MSG_DONTWAIT | MSG_NOSIGNAL) !=
            static_cast<ssize_t>(hello.size()) ||
        uv_poll_init(&ctx.loop, &link->poll, fd) != 0) {
      close(fd);
      delete link;
      continue;
    }
    link->poll.data = link;
    r.links.push_back(link);
    uv_poll_start(&link->poll, UV_READABLE, on_link_readable);
  }
}

}  // namespace

void open_handover_socket(worker_context& ctx) {
  if (!ctx.cfg.handover || ctx.runtime_dir.empty()) return;
  auto r = std::make_unique<handover_receiver>();
  r->path = handover::socket_path(ctx.runtime_dir, ctx.cfg.name, ctx.slot);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (r->path.size() >= sizeof addr.sun_path) {
    log_line(ctx.who, "handover off: socket path %s is too long", r->path.c_str());
    return;
  }
  std::memcpy(addr.sun_path, r->path.c_str(), r->path.size() + 1);
  r->listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  // The path belongs to this row: a previous holder of the row has exited (rows are reused
  // only once their worker is reaped), so what is there is stale.
  unlink(r->path.c_str());
  if (r->listen_fd < 0 || bind(r->listen_fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      listen(r->listen_fd, 128) != 0 || uv_poll_init(&ctx.loop, &r->listen_poll, r->listen_fd) != 0) {
    log_line(ctx.who, "handover off: cannot listen on %s: %s", r->path.c_str(), strerror(errno));
    if (r->listen_fd >= 0) close(r->listen_fd);
    unlink(r->path.c_str());
    return;
  }
  uv_poll_start(&r->listen_poll, UV_READABLE, on_listen_readable);
  ctx.receiver = r.release();
}

void close_handover_socket(worker_context& ctx) {
  handover_receiver* r = ctx.receiver;
  if (r == nullptr) return;
  ctx.receiver = nullptr;
  while (!r->links.empty()) drop_link(*r, r->links.back());
  unlink(r->path.c_str());
  r->listen_poll.data = r;
  uv_close(reinterpret_cast<uv_handle_t*>(&r->listen_poll), [](uv_handle_t* h) {
    auto* recv = static_cast<handover_receiver*>(h->data);
    close(recv->listen_fd);
    delete recv;
  });
}

}  // namespace wslb::worker
