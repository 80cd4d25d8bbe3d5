// libFuzzer target for what a client or a backend controls: the per-request state machine
// (request_head_parser: head fed in arbitrary pieces, the forwarded head built from it, the body
// delimited, then the next request of the connection, up to 8), the response reader (the same
// bytes as a backend's answers, message after message), and the other readers of untrusted
// input (response sniffer, PROXY header parser, WebSocket frame tracker).
//
// Input layout: byte 0 picks --max-header-size, byte 1 seeds how the rest is split into reads;
// the rest is what the client sends. The seed corpus files start with those two bytes.
//
// Besides "no crash, no sanitizer report", it checks what the worker relies on and traps
// (a finding) when it does not hold: the head it reports is a prefix of the input no longer
// than the limit, errors are statuses we can answer, the forwarded head has the size it
// announced, parses again to the same request and carries our forwarding headers only, a body
// or response step never consumes more than it was given and always makes progress.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "protocol/http_request.h"
#include "protocol/http_response.h"
#include "protocol/proxy_protocol.h"
#include "protocol/response_reader.h"
#include "protocol/websocket.h"

using namespace wslb::protocol;

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

std::size_t max_size_from(std::uint8_t b) {
  // Small limits (16-263 bytes) half the time so the 431 path is reached, else 1-64 KiB.
  return b < 128 ? 16 + 2 * std::size_t{b} : 1024 * (static_cast<std::size_t>(b - 127) / 2 + 1);
}

std::size_t count_named(const request_head_parser& p, std::string_view name) {
  std::size_t n = 0;
  for (std::size_t i = 0; i < p.header_count(); ++i) n += iequals(p.header_name(i), name) ? 1 : 0;
  return n;
}

void check_forwarded(const request_head_parser& p, bool add, bool trusted) {
  const forwarding f{add, "192.0.2.1", trusted};
  const std::size_t size = p.forwarded_head_size(f);
  std::string out(size + 8, '\0');
  check(p.write_forwarded_head(out.data(), out.size(), f) == size);
  check(size == 0 || p.write_forwarded_head(out.data(), size - 1, f) == 0);
  out.resize(size);

  request_head_parser again(size + 1);
  const head_feed_result r = again.feed(out.data(), out.size());
  check(r.status == head_status::complete);
  check(r.head_bytes_in_feed == out.size());
  check(again.method() == p.method());
  check(again.target() == p.target());
  check(again.is_websocket_upgrade() == p.is_websocket_upgrade());
  check(again.keep_alive() == p.keep_alive());
  for (const char* hop : {"Keep-Alive", "TE", "Proxy-Connection"}) check(count_named(again, hop) == 0);
  check(count_named(again, "Connection") <= 1);
  check(count_named(again, "Host") == count_named(p, "Host"));
  check(count_named(again, "Content-Length") == count_named(p, "Content-Length"));
  check(count_named(again, "Transfer-Encoding") == count_named(p, "Transfer-Encoding"));
  if (add) {
    check(count_named(again, "X-Forwarded-For") == 1);
    check(count_named(again, "Forwarded") == 1);
    const std::string_view xff = *again.header("X-Forwarded-For");
    check(xff.size() >= 9 && xff.substr(xff.size() - 9) == "192.0.2.1");
    for (const char* look_alike : {"X_Forwarded_For", "X_Real_IP", "X-Forwarded_For", "X_Forwarded-Proto"}) {
      check(count_named(again, look_alike) == 0);
    }
    if (!trusted) {
      check(xff == "192.0.2.1");
      check(again.header("X-Real-IP") == std::optional<std::string_view>("192.0.2.1"));
      check(again.header("X-Forwarded-Proto") == std::optional<std::string_view>("http"));
    }
  }
  if (!p.header("Connection")) {
    for (const char* name : {"sid", "session", "a"}) {
      check(again.cookie(name) == p.cookie(name));
      check(again.query_param(name) == p.query_param(name));
    }
  }
}

struct splitter {
  std::uint32_t seed;
  // xorshift32: piece sizes from 1 byte to a few hundred.
  std::size_t next(std::size_t left) {
    seed ^= seed << 13;
    seed ^= seed >> 17;
    seed ^= seed << 5;
    const std::size_t piece = (seed & 3) == 0 ? 1 + (seed >> 8) % 512 : 1 + (seed >> 8) % 8;
    return piece > left ? left : piece;
  }
};

// One request head from data[pos...]; returns the bytes it took, or 0 when it did not complete.
std::size_t fuzz_head(request_head_parser& p, const std::uint8_t* data, std::size_t size,
                      std::size_t max, splitter& split) {
  std::size_t pos = 0;
  while (pos < size) {
    const std::size_t piece = split.next(size - pos);
    const head_feed_result r = p.feed(reinterpret_cast<const char*>(data + pos), piece);
    if (r.status == head_status::complete) {
      check(r.head_bytes_in_feed >= 1 && r.head_bytes_in_feed <= piece);
      const std::string_view head = p.head();
      check(head.size() == pos + r.head_bytes_in_feed);
      check(head.size() <= max);
      check(std::memcmp(head.data(), data, head.size()) == 0);
      return head.size();
    }
    if (r.status == head_status::error) {
      check(r.http_status == 400 || r.http_status == 426 || r.http_status == 431);
      check(!error_response(r.http_status).empty());
      return 0;
    }
    pos += piece;
  }
  return 0;
}

// The requests of one connection, as the worker reads them: head, body, next head.
void fuzz_requests(const std::uint8_t* data, std::size_t size, std::size_t max, splitter& split) {
  request_head_parser p(max);
  for (int request = 0; request < 8 && size > 0; ++request) {
    const std::size_t head = fuzz_head(p, data, size, max, split);
    if (head == 0) return;
    (void)p.header("Host");
    (void)p.header("sec-websocket-key");
    if (request == 0) {
      check_forwarded(p, true, false);
      check_forwarded(p, true, true);
      check_forwarded(p, false, false);
    }
    data += head;
    size -= head;
    if (!p.start_body()) {
      bool done = false;
      while (size > 0 && !done) {
        const std::size_t piece = split.next(size);
        const body_feed_result b = p.feed_body(reinterpret_cast<const char*>(data), piece);
        check(b.consumed <= piece);
        if (b.error) return;
        check(b.done || b.consumed == piece);
        done = b.done;
        data += b.consumed;
        size -= b.consumed;
      }
      if (!done) return;
    }
    p.reset();
  }
}

// The same bytes as a backend's answers to a run of requests.
void fuzz_responses(const std::uint8_t* data, std::size_t size, splitter& split) {
  response_reader r;
  r.expect((split.seed & 4) != 0, (split.seed & 8) != 0);
  while (size > 0) {
    const std::size_t piece = split.next(size);
    const response_step s = r.feed(reinterpret_cast<const char*>(data), piece);
    check(s.consumed <= piece);
    if (s.event == response_event::error || s.event == response_event::switched) return;
    check(s.event != response_event::need_more || s.consumed == piece);
    check(s.event == response_event::need_more || s.consumed > 0);
    if (s.event == response_event::status_line) check(r.status() >= 100 && r.status() <= 999);
    data += s.consumed;
    size -= s.consumed;
    if (s.event == response_event::done) r.expect(false, false);
  }
  if (r.expecting()) (void)r.finish();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::size_t max = max_size_from(data[0]);
  const std::uint32_t seed = 0x9E3779B9u ^ (std::uint32_t{data[1]} * 0x01000193u);
  data += 2;
  size -= 2;
  splitter split{seed};
  fuzz_requests(data, size, max, split);
  fuzz_responses(data, size, split);

  response_sniffer sniffer(max);
  const sniff_result s = sniffer.feed(reinterpret_cast<const char*>(data), size);
  check(s.status != sniff_status::complete || s.head_bytes_in_feed <= size);

  proxy_header_info info;
  if (parse_proxy_header(data, size, info) == proxy_parse_status::complete) {
    check(info.header_len <= size);
  }

  frame_tracker tracker;
  tracker.feed(data, size);
  return 0;
}
