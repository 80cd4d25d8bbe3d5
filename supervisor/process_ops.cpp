#include "supervisor/process_ops.h"

#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/log.h"
#include "supervisor/child_process.h"

namespace wslb::supervisor {

void process_ops::close_all_channels() {
  for (child_id id = 0; id < max_children; ++id) close_channel(id);
}

pid_t process_ops::spawn(const child_spec& spec) {
  if (spec.id >= max_children) return -1;
  close_channel(spec.id);
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, pair) != 0) {
    log_line("master", "cannot create a channel for %s: %s", spec.what.c_str(), strerror(errno));
    return -1;
  }
  const int child_end = pair[1];
  const pid_t pid = fork_child({spec.extra_fd, child_end}, [&] { return spec.body(child_end); });
  close(pair[1]);
  if (pid < 0) {
    log_line("master", "cannot fork %s: %s", spec.what.c_str(), strerror(errno));
    close(pair[0]);
    return -1;
  }
  auto* w = new channel_watch{{}, this, spec.id, pair[0]};
  uv_poll_init(loop_, &w->poll, w->fd);
  w->poll.data = w;
  uv_poll_start(&w->poll, UV_READABLE, [](uv_poll_t* h, int, int) {
    auto* watch = static_cast<channel_watch*>(h->data);
    watch->owner->on_readable(*watch);
  });
  channels_[spec.id] = w;
  return pid;
}

void process_ops::on_readable(channel_watch& w) {
  char buf[16];
  const ssize_t n = recv(w.fd, buf, sizeof buf, 0);
  if (n <= 0) {
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    close_channel(w.id);  // the child is gone; SIGCHLD does the rest
    return;
  }
  const child_id id = w.id;
  for (ssize_t i = 0; i < n; ++i) events_.on_child_message(id, buf[i]);
}

void process_ops::send(child_id id, char message) {
  if (id < max_children && channels_[id] != nullptr) {
    [[maybe_unused]] ssize_t n = ::send(channels_[id]->fd, &message, 1, MSG_NOSIGNAL);
  }
}

void process_ops::kill(pid_t pid, int signum) {
  if (pid > 0) ::kill(pid, signum);
}

std::optional<exited_child> process_ops::reap() {
  int status = 0;
  const pid_t pid = waitpid(-1, &status, WNOHANG);
  if (pid <= 0) return std::nullopt;
  return exited_child{pid, status};
}

void process_ops::close_channel(child_id id) {
  if (id >= max_children || channels_[id] == nullptr) return;
  channel_watch* w = channels_[id];
  channels_[id] = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(&w->poll),
           [](uv_handle_t* h) { delete static_cast<channel_watch*>(h->data); });
  close(w->fd);
}

}  // namespace wslb::supervisor
