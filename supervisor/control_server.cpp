#include "supervisor/control_server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <stdexcept>

namespace wslb::supervisor {

namespace {
constexpr std::size_t max_command_bytes = 1024;

struct write_request {
  uv_write_t req;
  std::string text;
};

void on_handle_closed(uv_handle_t* h) {
  auto* r = static_cast<control_request*>(h->data);
  r->handle_closed();
}

// The uid of the process at the other end of a connected unix socket, or -1.
long peer_uid(uv_pipe_t& pipe) {
  uv_os_fd_t fd = -1;
  ucred cred{};
  socklen_t len = sizeof cred;
  if (uv_fileno(reinterpret_cast<uv_handle_t*>(&pipe), &fd) != 0 ||
      getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return -1;
  }
  return static_cast<long>(cred.uid);
}
}  // namespace

void command_table::add(std::string verb, handler h) {
  handlers_.emplace_back(std::move(verb), std::move(h));
}

void command_table::dispatch(const std::string& line, control_request_ptr request) const {
  const auto space = line.find(' ');
  const std::string verb = line.substr(0, space);
  const std::string arguments = space == std::string::npos ? "" : line.substr(space + 1);
  for (const auto& [name, h] : handlers_) {
    if (name == verb) return h(arguments, std::move(request));
  }
  request->finish(false, "unknown command '" + line + "'");
}

void control_request::send(std::string text) {
  if (closed_) return;
  auto* w = new write_request{{}, std::move(text)};
  uv_buf_t buf = uv_buf_init(w->text.data(), static_cast<unsigned>(w->text.size()));
  if (uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&pipe_), &buf, 1,
               [](uv_write_t* req, int) { delete reinterpret_cast<write_request*>(req); }) != 0) {
    delete w;
  }
}

void control_request::stop_waiting() {
  if (!waiting_) return;
  waiting_ = false;
  uv_close(reinterpret_cast<uv_handle_t*>(&command_timer_), on_handle_closed);
}

void control_request::handle_closed() {
  if (--open_handles_ == 0) self_.reset();
}

void control_request::close_handles() {
  stop_waiting();
  uv_close(reinterpret_cast<uv_handle_t*>(&pipe_), on_handle_closed);
}

void control_request::finish(bool ok, const std::string& line) {
  if (finished_) return;
  finished_ = true;
  send(std::string(ok ? "ok " : "error ") + line + "\n");
  if (closed_) return;
  closed_ = true;
  stop_waiting();
  // uv_close would cancel writes still queued; a shutdown completes after them.
  auto* req = new uv_shutdown_t;
  if (uv_shutdown(req, reinterpret_cast<uv_stream_t*>(&pipe_), [](uv_shutdown_t* r, int) {
        uv_handle_t* h = reinterpret_cast<uv_handle_t*>(r->handle);
        delete r;
        uv_close(h, on_handle_closed);
      }) != 0) {
    delete req;
    uv_close(reinterpret_cast<uv_handle_t*>(&pipe_), on_handle_closed);
  }
}

void control_server::start(uv_loop_t* loop, const std::string& path, command_handler on_command,
                           int inherited_fd) {
  on_command_ = std::move(on_command);
  path_ = path;
  uv_pipe_init(loop, &server_, 0);
  server_.data = this;
  int rc = 0;
  if (inherited_fd >= 0) {
    rc = uv_pipe_open(&server_, inherited_fd);
  } else {
    unlink(path.c_str());  // a socket file left by a crashed master; we hold the instance lock
    const mode_t old_mask = umask(0077);
    rc = uv_pipe_bind(&server_, path.c_str());
    umask(old_mask);
  }
  if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(&server_), 64, on_connection);
  if (rc != 0) {
    uv_close(reinterpret_cast<uv_handle_t*>(&server_), nullptr);
    throw std::runtime_error("cannot listen on control socket " + path + ": " + uv_strerror(rc));
  }
  chmod(path.c_str(), 0600);
  listening_ = true;
}

void control_server::stop(bool remove_file) {
  if (!listening_) return;
  listening_ = false;
  if (!remove_file) {
    // libuv unlinks the path a pipe was bound to when the handle closes; after an upgrade that
    // file is the new master's socket. Forgetting the name keeps it (a few bytes stay
    // allocated until this retiring master exits).
    server_.pipe_fname = nullptr;
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&server_), nullptr);
  if (remove_file) unlink(path_.c_str());
}

int control_server::fd() const {
  uv_os_fd_t fd = -1;
  if (!listening_ || uv_fileno(reinterpret_cast<const uv_handle_t*>(&server_), &fd) != 0) return -1;
  return fd;
}

void control_server::on_connection(uv_stream_t* server, int status) {
  if (status < 0) return;
  auto* self = static_cast<control_server*>(server->data);
  auto request = std::make_shared<control_request>();
  uv_pipe_init(server->loop, &request->pipe_, 0);
  request->pipe_.data = request.get();
  uv_timer_init(server->loop, &request->command_timer_);
  request->command_timer_.data = request.get();
  request->open_handles_ = 2;
  request->waiting_ = true;
  request->self_ = request;
  if (uv_accept(server, reinterpret_cast<uv_stream_t*>(&request->pipe_)) != 0) {
    request->finished_ = request->closed_ = true;
    request->close_handles();
    return;
  }
  request->server_ = self;
  // The socket file is 0600 in a 0700 directory, but a descriptor can be passed on: the
  // kernel's word on who is connected is what counts.
  const long uid = peer_uid(request->pipe_);
  if (uid != static_cast<long>(geteuid()) && uid != 0) {
    request->finish(false, "permission denied: uid " + std::to_string(uid) +
                               " may not control this instance");
    return;
  }
  uv_timer_start(&request->command_timer_, [](uv_timer_t* t) {
    static_cast<control_request*>(t->data)->finish(
        false, "no command within " + std::to_string(command_wait_ms / 1000) + " s");
  }, command_wait_ms, 0);
  uv_read_start(
      reinterpret_cast<uv_stream_t*>(&request->pipe_),
      [](uv_handle_t* h, size_t, uv_buf_t* buf) {
        auto* r = static_cast<control_request*>(h->data);
        *buf = uv_buf_init(r->read_buffer_, sizeof r->read_buffer_);
      },
      on_read);
}

void control_server::on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  auto* request = static_cast<control_request*>(stream->data);
  if (nread < 0) {
    if (!request->finished_) {
      // The CLI went away (Ctrl-C); the operation goes on, its answer has nowhere to go.
      request->finished_ = true;
      request->closed_ = true;
      request->close_handles();
    }
    return;
  }
  request->input_.append(buf->base, static_cast<std::size_t>(nread));
  const auto newline = request->input_.find('\n');
  if (newline == std::string::npos) {
    if (request->input_.size() > max_command_bytes) request->finish(false, "command too long");
    return;
  }
  uv_read_stop(stream);
  request->stop_waiting();
  std::string command = request->input_.substr(0, newline);
  request->server_->on_command_(command, request->shared_from_this());
}

}  // namespace wslb::supervisor
