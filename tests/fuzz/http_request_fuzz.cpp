// libFuzzer target for what a client controls before a backend is chosen: the request head
// (request_head_parser, fed in arbitrary pieces, then the forwarded head built from it), and,
// on the same bytes, the other readers of untrusted input (response sniffer, PROXY header
// parser, WebSocket frame tracker).
//
// Input layout: byte 0 picks --max-header-size, byte 1 seeds how the rest is split into reads;
// the rest is what the client sends. The seed corpus files start with those two bytes.
//
// Besides "no crash, no sanitizer report", it checks what the worker relies on and traps
// (a finding) when it does not hold: the head it reports is a prefix of the input no longer
// than the limit, errors are statuses we can answer, the forwarded head has the size it
// announced and parses again to the same request.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "protocol/http_request.h"
#include "protocol/http_response.h"
#include "protocol/proxy_protocol.h"
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

void check_forwarded(const request_head_parser& p, bool add) {
  const forwarding f{add, "192.0.2.1"};
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
  std::size_t expected = p.header_count();
  if (add) {
    expected -= count_named(p, "X-Forwarded-For") + count_named(p, "X-Forwarded-Proto") +
                count_named(p, "X-Real-IP");
    expected += 3;
    check(again.header("X-Real-IP") == std::optional<std::string_view>("192.0.2.1"));
    const std::string_view xff = *again.header("X-Forwarded-For");
    check(xff.size() >= 9 && xff.substr(xff.size() - 9) == "192.0.2.1");
  }
  check(again.header_count() == expected);
  for (const char* name : {"sid", "session", "a"}) {
    check(again.cookie(name) == p.cookie(name));
    check(again.query_param(name) == p.query_param(name));
  }
}

void fuzz_request(const std::uint8_t* data, std::size_t size, std::size_t max, std::uint32_t seed) {
  request_head_parser p(max);
  std::size_t pos = 0;
  head_feed_result r;
  while (pos < size) {
    // xorshift32: piece sizes from 1 byte to a few hundred.
    seed ^= seed << 13;
    seed ^= seed >> 17;
    seed ^= seed << 5;
    std::size_t piece = (seed & 3) == 0 ? 1 + (seed >> 8) % 512 : 1 + (seed >> 8) % 8;
    if (piece > size - pos) piece = size - pos;
    r = p.feed(reinterpret_cast<const char*>(data + pos), piece);
    if (r.status == head_status::complete) {
      check(r.head_bytes_in_feed >= 1 && r.head_bytes_in_feed <= piece);
      const std::string_view head = p.head();
      check(head.size() == pos + r.head_bytes_in_feed);
      check(head.size() <= max);
      check(std::memcmp(head.data(), data, head.size()) == 0);
      break;
    }
    if (r.status == head_status::error) {
      check(r.http_status == 400 || r.http_status == 426 || r.http_status == 431);
      check(!error_response(r.http_status).empty());
      break;
    }
    pos += piece;
  }
  if (r.status != head_status::complete) return;
  (void)p.header("Host");
  (void)p.header("sec-websocket-key");
  check_forwarded(p, true);
  check_forwarded(p, false);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::size_t max = max_size_from(data[0]);
  const std::uint32_t seed = 0x9E3779B9u ^ (std::uint32_t{data[1]} * 0x01000193u);
  data += 2;
  size -= 2;
  fuzz_request(data, size, max, seed);

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
