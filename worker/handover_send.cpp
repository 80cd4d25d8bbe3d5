#include "worker/handover_send.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "common/handover_format.h"
#include "common/log.h"
#include "worker/access_record.h"
#include "worker/drain.h"
#include "worker/handover_spread.h"
#include "worker/row_counters.h"
#include "worker/session.h"

namespace wslb::worker {

namespace {

constexpr auto relaxed = std::memory_order_relaxed;
// How long a receiver may take to answer its hello; the old worker's loop waits meanwhile.
constexpr int hello_wait_ms = 2000;
// Connections not movable yet (in their handshake, a large write queued) are looked at again.
constexpr std::uint64_t retry_ms = 20;
// A receiver that has taken nothing for this long (stopped, hung) no longer holds the others
// to max_lead: the rest goes to them rather than wait for it until the drain deadline.
constexpr std::uint64_t lead_wait_ms = 1000;
// A record up to max_record_bytes must fit the socket's send buffer in one message.
constexpr int send_buffer_bytes = 1 << 20;

struct receiver_link {
  uv_poll_t poll;
  int fd = -1;
  std::size_t row = 0;
  receiver_load load;   // its own connections when we connected, and what we sent it
  bool blocked = false;  // its socket is full: waiting for it to be writable
  std::uint64_t blocked_at_ms = 0;  // loop time, while blocked
};

enum class send_result { sent, blocked, too_big, broken };

}  // namespace

struct handover_sender {
  std::vector<receiver_link*> links;
  uv_timer_t retry{};
  std::uint64_t sent = 0;
  bool told_no_receiver = false;
  // What this worker moves, and what all the older workers move together (its own
  // included): worker/handover_spread.h.
  std::uint64_t mine = 1;
  std::uint64_t all_moving = 1;
};

namespace {

constexpr std::uint8_t bit(direction d) { return static_cast<std::uint8_t>(1u << d); }

void drop_link(handover_sender& h, receiver_link* link) {
  std::erase(h.links, link);
  uv_close(reinterpret_cast<uv_handle_t*>(&link->poll), [](uv_handle_t* p) {
    auto* l = static_cast<receiver_link*>(p->data);
    close(l->fd);
    delete l;
  });
}

// Connects to the handover socket of the worker in `row` and reads its hello. -1 (logged)
// when it cannot take our tunnels.
int connect_receiver(worker_context& ctx, std::size_t row, pid_t pid) {
  const std::string path = handover::socket_path(ctx.runtime_dir, ctx.cfg.name, row);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) return -1;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  const int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  ucred cred{};
  socklen_t len = sizeof cred;
  std::string why;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    why = std::string("connect: ") + strerror(errno);
  } else if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.pid != pid ||
             cred.uid != geteuid()) {
    // Whoever listens at that path is not the worker the table names.
    why = "its socket belongs to pid " + std::to_string(cred.pid);
  } else {
    pollfd p{fd, POLLIN, 0};
    char buf[64];
    handover::decode_error error;
    const ssize_t n = poll(&p, 1, hello_wait_ms) == 1 ? recv(fd, buf, sizeof buf, 0) : -1;
    const auto hello = n > 0 ? handover::decode_hello(std::string_view(buf, n), error)
                             : std::nullopt;
    if (!hello) {
      why = n > 0 ? "bad hello: " + error.why : "no hello";
    } else if (hello->version != handover::format_version) {
      why = "it speaks handover format " + std::to_string(hello->version) + ", this worker " +
            std::to_string(handover::format_version);
    } else {
      setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &send_buffer_bytes, sizeof send_buffer_bytes);
      return fd;
    }
  }
  log_line(ctx.who, "handover: worker %zu cannot take tunnels (%s)", row, why.c_str());
  close(fd);
  return -1;
}

// The bytes queued towards the destination of `d` and not yet written, when they are all of
// the direction's one pending remainder (no answer or close frame of ours among them) and fit
// a record. False when the tunnel cannot move now.
bool unwritten_bytes(session* s, direction d, std::string& out) {
  const std::size_t queued = uv_stream_get_write_queue_size(s->stream(d, false));
  const std::size_t pending = s->pending[d] != nullptr ? s->pending[d]->len : 0;
  if (queued > pending || queued > handover::max_unwritten) return false;
  // libuv writes a request front to back: what is left is its tail.
  if (queued > 0) out.assign(s->pending[d]->bytes() + (pending - queued), queued);
  return true;
}

// A tunnel that can move now, described in `rec`.
bool describe_tunnel(worker_context& ctx, session* s, handover::tunnel_record& rec) {
  if (s->dead || s->at != phase::tunnel || !s->backend_open || !s->counted ||
      s->backend_index == no_backend_index || s->shut_sent_mask != s->shut_done_mask) {
    return false;
  }
  const std::size_t row = ctx.cfg.backends[s->backend_index].row;
  // A backend a reload removed is not in the new configuration: its tunnels drain here.
  if (ctx.table.backends[row].state.load(relaxed) != shm::backend_state::active) return false;
  for (direction d : {to_backend, to_client}) {
    if (!unwritten_bytes(s, d, rec.unwritten[d])) return false;
  }
  const auto now = static_cast<std::uint32_t>(uv_now(&ctx.loop));
  rec.kind = static_cast<std::uint8_t>(s->kind);
  rec.flags = static_cast<std::uint8_t>((s->upgraded ? handover::flag_upgraded : 0) |
                                        (s->sniffing ? handover::flag_sniffing : 0) |
                                        (s->graceful ? handover::flag_graceful : 0) |
                                        (s->has_sticky_key ? handover::flag_sticky_key : 0) |
                                        (s->pinned ? handover::flag_pinned : 0) |
                                        (s->cause_noted ? handover::flag_cause_noted : 0));
  rec.eof_mask = s->eof_mask;
  rec.shut_sent_mask = s->shut_sent_mask;
  rec.shut_done_mask = s->shut_done_mask;
  rec.finishing_mask = s->finishing_mask;
  rec.done_mask = s->done_mask;
  rec.close_cause = static_cast<std::uint8_t>(s->cause);
  rec.client_close_code = s->client_close_code;
  rec.backend_row = static_cast<std::uint16_t>(row);
  rec.backend_address = ctx.backend_names[s->backend_index];
  rec.last_status = s->last_status;
  rec.requests = s->requests;
  rec.idle_ms = now - s->last_active_ms;
  const auto left = static_cast<std::int32_t>(s->close_at_ms - now);
  rec.close_in_ms = s->graceful && left > 0 ? static_cast<std::uint32_t>(left) : 0;
  rec.source_key = s->source_key;
  rec.age_ms = static_cast<std::uint32_t>((uv_hrtime() - s->accepted_ns) / 1'000'000);
  rec.sticky_key = s->sticky_key;
  describe_access_record(s, rec);
  if (s->upgraded || s->sniffing) {
    static_assert(sizeof s->watch <= handover::max_watch_bytes, "the receiver refuses a longer watch");
    rec.watch.assign(reinterpret_cast<const char*>(&s->watch), sizeof s->watch);
  }
  return true;
}

send_result send_tunnel(session* s, const handover::tunnel_record& rec, receiver_link& link) {
  const std::string bytes = handover::encode(rec);
  uv_os_fd_t fds[2] = {-1, -1};
  uv_fileno(reinterpret_cast<uv_handle_t*>(&s->client), &fds[0]);
  uv_fileno(reinterpret_cast<uv_handle_t*>(&s->backend), &fds[1]);
  iovec iov{const_cast<char*>(bytes.data()), bytes.size()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof fds)] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof fds);
  std::memcpy(CMSG_DATA(c), fds, sizeof fds);
  for (;;) {
    if (sendmsg(link.fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0) return send_result::sent;
    if (errno == EINTR) continue;
    // ETOOMANYREFS: too many descriptors in flight for this user; the receiver takes some.
    if (errno == EAGAIN || errno == ETOOMANYREFS || errno == ENOBUFS) return send_result::blocked;
    if (errno == EMSGSIZE) return send_result::too_big;
    return send_result::broken;
  }
}

// The receiver to send the next tunnel to: the least loaded as this sender counts it
// (worker/handover_spread.h), or while its socket is full the least loaded of the others
// within max_lead of it (any of them once it has been full for lead_wait_ms); nullptr: wait
// until a full one is writable again.
receiver_link* least_loaded(handover_sender& h, std::uint64_t now) {
  receiver_link* least = nullptr;
  receiver_link* open = nullptr;
  for (receiver_link* l : h.links) {
    if (least == nullptr || lighter(l->load, least->load, h.mine, h.all_moving)) least = l;
    if (!l->blocked && (open == nullptr || lighter(l->load, open->load, h.mine, h.all_moving))) {
      open = l;
    }
  }
  if (open == nullptr || open == least || now - least->blocked_at_ms >= lead_wait_ms) return open;
  return within_lead(open->load, least->load, h.mine, h.all_moving) ? open : nullptr;
}

void pump(worker_context& ctx);

// Comes back to pump after retry_ms.
void pump_later(handover_sender& h) {
  uv_timer_start(&h.retry, [](uv_timer_t* t) { pump(worker_context::of(t->loop)); }, retry_ms,
                 0);
}

void on_link_writable(uv_poll_t* poll, int status, int) {
  worker_context& ctx = worker_context::of(poll->loop);
  auto* link = static_cast<receiver_link*>(poll->data);
  if (status < 0) {
    drop_link(*ctx.sender, link);
  } else {
    link->blocked = false;
    uv_poll_stop(poll);
  }
  pump(ctx);
}

// Sends every tunnel that can move now; comes back when a receiver is writable again or, for
// connections not movable yet, after retry_ms.
void pump(worker_context& ctx) {
  handover_sender& h = *ctx.sender;
  bool left_behind = false;
  for (session* s = ctx.sessions; s != nullptr && !h.links.empty();) {
    session* next = s->next;
    handover::tunnel_record rec;
    if (s->backend_tls.is_open()) {
      // Its backend side's TLS state is this process's SSL object, which no descriptor
      // carries: it drains here (1001 inside TLS, then close_notify), never moves.
      s = next;
      continue;
    }
    if (!describe_tunnel(ctx, s, rec)) {
      left_behind = left_behind || !s->dead;
      s = next;
      continue;
    }
    receiver_link* link = least_loaded(h, uv_now(&ctx.loop));
    if (link == nullptr) {
      // The receivers due are full: on_link_writable comes back, or this timer once a full
      // one has taken nothing for lead_wait_ms.
      pump_later(h);
      return;
    }
    switch (send_tunnel(s, rec, *link)) {
      case send_result::sent:
        ++link->load.sent;
        ++h.sent;
        counter_add(ctx.row.handed_over, 1);
        // The receiver holds the sockets now: closing ours neither resets nor ends them.
        forget_access_record(s);  // its line is the receiver's to write
        s->handed_over = true;    // so are its close, kind and lifetime (record_end)
        close_session(s);
        s = next;
        break;
      case send_result::blocked:
        link->blocked = true;
        link->blocked_at_ms = uv_now(&ctx.loop);
        uv_poll_start(&link->poll, UV_WRITABLE, on_link_writable);
        break;  // the same tunnel, to another receiver
      case send_result::too_big:
        left_behind = true;
        s = next;
        break;
      case send_result::broken:
        log_line(ctx.who, "handover: worker %zu is gone: %s", link->row, strerror(errno));
        drop_link(h, link);
        break;
    }
  }
  if (h.links.empty()) {
    if (!h.told_no_receiver) {
      h.told_no_receiver = true;
      log_line(ctx.who, "handover: no receiver left after %llu tunnels; draining %zu connections",
               static_cast<unsigned long long>(h.sent), ctx.live_sessions);
    }
    uv_timer_stop(&h.retry);
    return;
  }
  if (left_behind) pump_later(h);
}

}  // namespace

void begin_handover(worker_context& ctx) {
  if (ctx.phase != worker_phase::running) return;
  const std::size_t before = ctx.live_sessions;
  begin_drain(ctx);
  if (ctx.phase != worker_phase::draining || before == 0 || ctx.runtime_dir.empty()) return;
  // A TLS connection's state is this process's SSL object, which no descriptor carries: with
  // TLS on the listener the connections drain (1001 inside TLS, then close_notify).
  if (ctx.cfg.tls.server) return;
  auto h = std::make_unique<handover_sender>();
  uv_timer_init(&ctx.loop, &h->retry);
  // The newest generation's running workers take the tunnels.
  std::uint32_t newest = ctx.generation;
  for (std::size_t i = 0; i < shm::max_worker_slots; ++i) {
    const shm::worker_row& w = ctx.table.workers[i];
    if (w.state.load(relaxed) == shm::worker_state::running) {
      newest = std::max(newest, w.generation.load(relaxed));
    }
  }
  h->mine = std::max<std::uint64_t>(ctx.live_sessions, 1);
  h->all_moving = std::max(moving_in_all(ctx.table, newest), h->mine);
  for (std::size_t i = 0; i < shm::max_worker_slots && newest != ctx.generation; ++i) {
    const shm::worker_row& w = ctx.table.workers[i];
    if (w.state.load(relaxed) != shm::worker_state::running ||
        w.generation.load(relaxed) != newest) {
      continue;
    }
    const int fd = connect_receiver(ctx, i, w.pid.load(relaxed));
    if (fd < 0) continue;
    auto* link = new receiver_link{};
    link->fd = fd;
    link->row = i;
    link->load.own = own_connections(w);
    uv_poll_init(&ctx.loop, &link->poll, fd);
    link->poll.data = link;
    h->links.push_back(link);
  }
  ctx.sender = h.release();
  if (ctx.sender->links.empty()) {
    log_line(ctx.who, "handover: no worker of generation %u takes tunnels; draining instead",
             newest);
    ctx.sender->told_no_receiver = true;
    return;
  }
  log_line(ctx.who, "handover: passing %zu connections to %zu workers of generation %u",
           ctx.live_sessions, ctx.sender->links.size(), newest);
  pump(ctx);
}

void close_handover_links(worker_context& ctx) {
  handover_sender* h = ctx.sender;
  if (h == nullptr) return;
  ctx.sender = nullptr;
  log_line(ctx.who, "handover: %llu tunnels passed on", static_cast<unsigned long long>(h->sent));
  while (!h->links.empty()) drop_link(*h, h->links.back());
  h->retry.data = h;
  uv_close(reinterpret_cast<uv_handle_t*>(&h->retry),
           [](uv_handle_t* t) { delete static_cast<handover_sender*>(t->data); });
}

}  // namespace wslb::worker
