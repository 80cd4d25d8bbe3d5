#include "supervisor/control_server.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

namespace wslb::supervisor {

namespace {
constexpr std::size_t max_command_bytes = 1024;

struct write_request {
  uv_write_t req;
  std::string text;
};

// Closes a request's pipe; the request lets go of itself once libuv is done with the handle.
void close_request_pipe(uv_handle_t* pipe) {
  uv_close(pipe, [](uv_handle_t* h) { static_cast<control_request*>(h->data)->release(); });
}
}  // namespace

void control_request::send(std::string text) {
  if (closed_) return;
  auto* w = new write_request{{}, std::move(text)};
  uv_buf_t buf = uv_buf_init(w->text.data(), static_cast<unsigned>(w->text.size()));
  if (uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&pipe_), &buf, 1,
               [](uv_write_t* req, int) { delete reinterpret_cast<write_request*>(req); }) != 0) {
    delete w;
  }
}

void control_request::finish(bool ok, const std::string& line) {
  if (finished_) return;
  finished_ = true;
  send(std::string(ok ? "ok " : "error ") + line + "\n");
  if (closed_) return;
  closed_ = true;
  // uv_close would cancel writes still queued; a shutdown completes after them.
  auto* req = new uv_shutdown_t;
  if (uv_shutdown(req, reinterpret_cast<uv_stream_t*>(&pipe_), [](uv_shutdown_t* r, int) {
        uv_handle_t* h = reinterpret_cast<uv_handle_t*>(r->handle);
        delete r;
        close_request_pipe(h);
      }) != 0) {
    delete req;
    close_request_pipe(reinterpret_cast<uv_handle_t*>(&pipe_));
  }
}

bool control_server::start(uv_loop_t* loop, const std::string& path, command_handler on_command,
                           std::string& error) {
  on_command_ = std::move(on_command);
  path_ = path;
  unlink(path.c_str());  // a socket file left by a crashed master; we hold the instance lock
  uv_pipe_init(loop, &server_, 0);
  server_.data = this;
  const mode_t old_mask = umask(0077);
  int rc = uv_pipe_bind(&server_, path.c_str());
  umask(old_mask);
  if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(&server_), 64, on_connection);
  if (rc != 0) {
    error = "cannot listen on control socket " + path + ": " + uv_strerror(rc);
    uv_close(reinterpret_cast<uv_handle_t*>(&server_), nullptr);
    return false;
  }
  chmod(path.c_str(), 0600);
  listening_ = true;
  return true;
}

void control_server::stop() {
  if (!listening_) return;
  listening_ = false;
  uv_close(reinterpret_cast<uv_handle_t*>(&server_), nullptr);
  unlink(path_.c_str());
}

void control_server::on_connection(uv_stream_t* server, int status) {
  if (status < 0) return;
  auto* self = static_cast<control_server*>(server->data);
  auto request = std::make_shared<control_request>();
  uv_pipe_init(server->loop, &request->pipe_, 0);
  request->pipe_.data = request.get();
  request->self_ = request;
  if (uv_accept(server, reinterpret_cast<uv_stream_t*>(&request->pipe_)) != 0) {
    request->closed_ = true;
    close_request_pipe(reinterpret_cast<uv_handle_t*>(&request->pipe_));
    return;
  }
  request->server_ = self;
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
      close_request_pipe(reinterpret_cast<uv_handle_t*>(stream));
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
  std::string command = request->input_.substr(0, newline);
  request->server_->on_command_(command, request->shared_from_this());
}

}  // namespace wslb::supervisor
