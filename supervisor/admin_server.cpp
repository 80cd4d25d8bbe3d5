#include "supervisor/admin_server.h"

#include <sys/socket.h>

#include <set>

#include "common/log.h"

namespace wslb::supervisor {

struct admin_server::client {
  uv_tcp_t tcp{};
  uv_timer_t deadline{};
  admin_server* owner = nullptr;
  std::string received;
  std::string answer;  // kept alive until its write completes
  uv_write_t write_req{};
  char read_buffer[2048];
  int handles_open = 0;  // tcp and timer: the client is freed once both have closed
  bool closing = false;
};

bool admin_server::start(uv_loop_t* loop, int fd, std::string token, handler on_request,
                         std::string& error) {
  loop_ = loop;
  token_ = std::move(token);
  on_request_ = std::move(on_request);
  uv_tcp_init(loop, &server_);
  server_.data = this;
  int rc = uv_tcp_open(&server_, fd);
  // The socket already listens; libuv's listen only starts watching it.
  if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(&server_), 64, on_connection);
  if (rc != 0) {
    error = uv_strerror(rc);
    uv_close(reinterpret_cast<uv_handle_t*>(&server_), nullptr);
    return false;
  }
  listening_ = true;
  return true;
}

int admin_server::port() const {
  if (!listening_) return 0;
  sockaddr_storage addr{};
  int len = sizeof addr;
  if (uv_tcp_getsockname(&server_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return 0;
  if (addr.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  return ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
}

int admin_server::fd() const {
  uv_os_fd_t fd = -1;
  if (!listening_ || uv_fileno(reinterpret_cast<const uv_handle_t*>(&server_), &fd) != 0) {
    return -1;
  }
  return fd;
}

void admin_server::stop_listening() {
  if (!listening_) return;
  listening_ = false;
  uv_close(reinterpret_cast<uv_handle_t*>(&server_), nullptr);
}

void admin_server::stop() {
  stop_listening();
  const std::set<client*> clients = clients_;
  for (client* c : clients) close_client(*c);
}

void admin_server::on_connection(uv_stream_t* server, int status) {
  if (status < 0) return;
  auto* self = static_cast<admin_server*>(server->data);
  auto* c = new client;
  c->owner = self;
  uv_tcp_init(self->loop_, &c->tcp);
  uv_timer_init(self->loop_, &c->deadline);
  c->tcp.data = c;
  c->deadline.data = c;
  c->handles_open = 2;
  self->clients_.insert(c);
  if (uv_accept(server, reinterpret_cast<uv_stream_t*>(&c->tcp)) != 0 ||
      self->clients_.size() > max_admin_clients) {
    // Over the limit: accepted only to be closed, so the kernel's queue does not fill.
    self->close_client(*c);
    return;
  }
  uv_timer_start(&c->deadline, [](uv_timer_t* t) {
    auto* cl = static_cast<client*>(t->data);
    cl->owner->close_client(*cl);
  }, admin_client_deadline_ms, 0);
  uv_read_start(
      reinterpret_cast<uv_stream_t*>(&c->tcp),
      [](uv_handle_t* h, size_t, uv_buf_t* buf) {
        auto* cl = static_cast<client*>(h->data);
        *buf = uv_buf_init(cl->read_buffer, sizeof cl->read_buffer);
      },
      [](uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
        auto* cl = static_cast<client*>(stream->data);
        if (nread < 0) {
          cl->owner->close_client(*cl);
          return;
        }
        cl->received.append(buf->base, static_cast<std::size_t>(nread));
        cl->owner->serve(*cl);
      });
}

void admin_server::serve(client& c) {
  const auto head_length = admin_head_length(c.received);
  admin_response response;
  if (!head_length) {
    if (c.received.size() <= max_admin_head_bytes) return;  // wait for more
    response = plain_admin_response(431, "request head over " +
                                             std::to_string(max_admin_head_bytes) + " bytes");
  } else if (*head_length > max_admin_head_bytes) {
    response = plain_admin_response(431, "request head over " +
                                             std::to_string(max_admin_head_bytes) + " bytes");
  } else if (auto request = parse_admin_request(std::string_view(c.received).substr(0, *head_length))) {
    if (!admin_authorized(*request, token_)) {
      response = plain_admin_response(401, "a bearer token is required (Authorization: Bearer TOKEN)");
      response.extra_headers = "WWW-Authenticate: Bearer realm=\"wslb\"\r\n";
    } else if (request->method != "GET") {
      response = plain_admin_response(405, "only GET is served");
      response.extra_headers = "Allow: GET\r\n";
    } else {
      response = on_request_(*request);
    }
  } else {
    response = plain_admin_response(400, "malformed request head");
  }
  uv_read_stop(reinterpret_cast<uv_stream_t*>(&c.tcp));
  c.answer = render_admin_response(response);
  uv_buf_t buf = uv_buf_init(c.answer.data(), static_cast<unsigned>(c.answer.size()));
  c.write_req.data = &c;
  if (uv_write(&c.write_req, reinterpret_cast<uv_stream_t*>(&c.tcp), &buf, 1,
               [](uv_write_t* req, int) {
                 auto* cl = static_cast<client*>(req->data);
                 cl->owner->close_client(*cl);
               }) != 0) {
    close_client(c);
  }
}

void admin_server::close_client(client& c) {
  if (c.closing) return;
  c.closing = true;
  clients_.erase(&c);
  // Closing the socket cancels a write still queued; its callback then finds `closing` set.
  uv_close(reinterpret_cast<uv_handle_t*>(&c.tcp), on_client_handle_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&c.deadline), on_client_handle_closed);
}

void admin_server::on_client_handle_closed(uv_handle_t* h) {
  auto* c = static_cast<client*>(h->data);
  if (--c->handles_open == 0) delete c;
}

}  // namespace wslb::supervisor
