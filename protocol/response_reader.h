// Follows a backend's HTTP/1.1 responses on a kept-alive connection, one per request, without
// copying them: where each response's status line ends (so that the worker can add a header
// behind it), where the response ends (Content-Length, chunked, close-delimited, no body for
// 1xx, 204, 304 and answers to HEAD), and whether a 101 switched protocols. Built on Debian's
// http-parser (2.9) in response mode. The worker relays exactly the bytes each step consumed.
#pragma once

#include <http_parser.h>

#include <cstddef>
#include <cstdint>

namespace wslb::protocol {

enum class response_event : std::uint8_t {
  need_more,    // every byte consumed, the response goes on
  status_line,  // the bytes up to and including the status line's LF; status() is known
  interim,      // a 1xx other than 101 ended: another response head follows for this request
  done,         // the final response ended (keep_alive() says whether another may follow)
  switched,     // a 101 head ended: the rest of the stream is the new protocol
  error,        // not HTTP, malformed, or bytes when no response was expected
};

struct response_step {
  response_event event = response_event::need_more;
  std::size_t consumed = 0;  // bytes of the feed up to and including the event
};

class response_reader {
 public:
  response_reader();
  response_reader(const response_reader&) = delete;
  response_reader& operator=(const response_reader&) = delete;

  // Arms the reader for the answer to one request: `head_request` (HEAD: no body whatever the
  // headers say), `upgrade_request` (a 101 switches protocols; a 101 to anything else is an
  // error).
  void expect(bool head_request, bool upgrade_request);

  // Advances over the backend's next bytes, stopping after the first event (call again with
  // the rest). Bytes while no answer is expected are an error.
  response_step feed(const char* data, std::size_t len);

  // The backend closed its side: ends a close-delimited response (done), else error (the
  // response was cut short, or never came).
  response_step finish();

  // True between expect() and the final response's end.
  bool expecting() const { return stage_ != stage::idle; }
  // True once any byte of the current answer has been seen (nothing relayed yet when false).
  bool started() const { return started_; }
  // The status code of the current (or last) response head, once its status line is read.
  int status() const { return static_cast<int>(parser_.status_code); }
  // After `done`: the connection may carry another request (HTTP/1.1 without Connection:
  // close, or 1.0 with keep-alive, and not close-delimited).
  bool keep_alive() const { return keep_alive_; }

 private:
  enum class stage : std::uint8_t { idle, status_line, rest };
  static const http_parser_settings& settings();
  static int on_headers_complete(http_parser* p);
  static int on_message_complete(http_parser* p);

  http_parser parser_{};
  stage stage_ = stage::idle;
  bool head_request_ = false;
  bool upgrade_request_ = false;
  bool started_ = false;
  bool message_done_ = false;
  bool switched_ = false;
  bool keep_alive_ = false;
};

}  // namespace wslb::protocol
