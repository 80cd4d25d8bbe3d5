#include "protocol/response_reader.h"

#include <cstring>

namespace wslb::protocol {

response_reader::response_reader() {
  http_parser_init(&parser_, HTTP_RESPONSE);
  parser_.data = this;
}

const http_parser_settings& response_reader::settings() {
  static const http_parser_settings s = [] {
    http_parser_settings init;
    http_parser_settings_init(&init);
    init.on_headers_complete = &response_reader::on_headers_complete;
    init.on_message_complete = &response_reader::on_message_complete;
    return init;
  }();
  return s;
}

int response_reader::on_headers_complete(http_parser* p) {
  auto* self = static_cast<response_reader*>(p->data);
  const unsigned code = p->status_code;
  if (code == 101) {
    if (!self->upgrade_request_) return -1;  // a switch nobody asked for
    // 2 = the rest is another protocol: http-parser ends the message at the head, whatever
    // Upgrade/Connection the backend wrote.
    self->switched_ = true;
    return 2;
  }
  // RFC 9112 6.3: these never have a body, whatever Content-Length or Transfer-Encoding say.
  if (self->head_request_ || code / 100 == 1 || code == 204 || code == 304) return 1;
  return 0;
}

int response_reader::on_message_complete(http_parser* p) {
  auto* self = static_cast<response_reader*>(p->data);
  self->message_done_ = true;
  self->keep_alive_ = http_should_keep_alive(p) != 0;
  http_parser_pause(p, 1);  // one message per step: the caller decides what follows
  return 0;
}

void response_reader::expect(bool head_request, bool upgrade_request) {
  http_parser_init(&parser_, HTTP_RESPONSE);
  parser_.data = this;
  stage_ = stage::status_line;
  head_request_ = head_request;
  upgrade_request_ = upgrade_request;
  started_ = false;
  message_done_ = false;
  switched_ = false;
  keep_alive_ = false;
}

response_step response_reader::feed(const char* data, std::size_t len) {
  if (stage_ == stage::idle) return {response_event::error, 0};
  if (len == 0) return {};  // execute(len 0) would mean EOF
  started_ = true;
  std::size_t skipped = 0;  // empty lines before the status line (RFC 9112 2.2 allows them)
  while (stage_ == stage::status_line) {
    // The status line alone, so that the caller can relay it and add a header right behind it.
    const void* lf = std::memchr(data, '\n', len);
    const std::size_t n =
        lf == nullptr ? len : static_cast<std::size_t>(static_cast<const char*>(lf) - data) + 1;
    const std::size_t parsed = http_parser_execute(&parser_, &settings(), data, n);
    if (HTTP_PARSER_ERRNO(&parser_) != HPE_OK || parsed != n) {
      stage_ = stage::idle;
      return {response_event::error, 0};
    }
    if (lf == nullptr) return {response_event::need_more, skipped + n};
    const bool empty_line = n == 1 || (n == 2 && data[0] == '\r');
    if (parser_.status_code >= 100) {
      stage_ = stage::rest;
      return {response_event::status_line, skipped + n};
    }
    if (parser_.status_code != 0 || !empty_line) {  // http-parser takes "HTTP/1.1 10" too
      stage_ = stage::idle;
      return {response_event::error, 0};
    }
    skipped += n;
    data += n;
    len -= n;
    if (len == 0) return {response_event::need_more, skipped};
  }
  const std::size_t parsed = http_parser_execute(&parser_, &settings(), data, len);
  if (!message_done_) {
    if (HTTP_PARSER_ERRNO(&parser_) != HPE_OK || parsed != len) {
      stage_ = stage::idle;
      return {response_event::error, 0};
    }
    return {response_event::need_more, parsed};
  }
  // Paused in on_message_complete, after the message's last byte.
  message_done_ = false;
  http_parser_pause(&parser_, 0);
  if (switched_) {
    stage_ = stage::idle;
    return {response_event::switched, parsed};
  }
  if (parser_.status_code / 100 == 1) {
    stage_ = stage::status_line;  // 100 Continue, 103 Early Hints: the real answer follows
    return {response_event::interim, parsed};
  }
  stage_ = stage::idle;
  return {response_event::done, parsed};
}

response_step response_reader::finish() {
  if (stage_ == stage::rest) {
    http_parser_execute(&parser_, &settings(), nullptr, 0);  // len 0: the peer closed
    if (message_done_) {
      message_done_ = false;
      stage_ = stage::idle;
      keep_alive_ = false;
      return {response_event::done, 0};
    }
  }
  stage_ = stage::idle;
  return {response_event::error, 0};
}

}  // namespace wslb::protocol
