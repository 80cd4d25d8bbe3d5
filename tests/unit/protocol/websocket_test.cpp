#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <tuple>
#include <vector>

#include "protocol/websocket.h"

using namespace wslb::protocol;

namespace {

// One frame (header + payload) appended to `out`; returns nothing, the tests count frames.
void append_frame(std::vector<std::uint8_t>& out, opcode op, std::size_t payload_len,
                  bool masked) {
  std::uint8_t header[max_frame_header];
  const std::uint8_t mask[4] = {0x11, 0x22, 0x33, 0x44};
  const std::size_t n = write_frame_header(header, op, payload_len, masked ? mask : nullptr);
  out.insert(out.end(), header, header + n);
  for (std::size_t i = 0; i < payload_len; ++i) out.push_back(static_cast<std::uint8_t>(i * 7));
}

}  // namespace

TEST_CASE("websocket.accept_rfc6455_example") {
  CHECK(websocket_accept("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST_CASE("websocket.key_validation") {
  CHECK(valid_websocket_key("dGhlIHNhbXBsZSBub25jZQ=="));
  CHECK_FALSE(valid_websocket_key(""));
  CHECK_FALSE(valid_websocket_key("dGhlIHNhbXBsZSBub25jZQ="));     // 23 chars
  CHECK_FALSE(valid_websocket_key("dGhlIHNhbXBsZSBub25jZQ==="));   // 25 chars
  CHECK_FALSE(valid_websocket_key("dGhlIHNhbXBsZSBub25jZQAA"));    // no padding: 18 bytes
  CHECK_FALSE(valid_websocket_key("dGhlIHNhbXBsZSBub25j!Q=="));    // not base64
  CHECK_FALSE(valid_websocket_key("dGhlIHNhbXBsZSBub2=jZQ=="));    // padding in the middle
  for (int i = 0; i < 50; ++i) {
    const std::string k = make_websocket_key();
    CHECK(k.size() == 24);
    CHECK(valid_websocket_key(k));
  }
  CHECK(make_websocket_key() != make_websocket_key());
}

TEST_CASE("websocket.frame_header_lengths_round_trip") {
  const std::uint8_t mask[4] = {1, 2, 3, 4};
  struct item {
    std::uint64_t len;
    std::size_t header_unmasked;
  };
  for (const item it : {item{0, 2}, item{125, 2}, item{126, 4}, item{65535, 4},
                        item{65536, 10}, item{(1ull << 40) + 5, 10}}) {
    for (bool masked : {false, true}) {
      std::uint8_t buf[max_frame_header];
      const std::size_t n =
          write_frame_header(buf, opcode::binary, it.len, masked ? mask : nullptr);
      CHECK(n == it.header_unmasked + (masked ? 4 : 0));
      frame_header h;
      CHECK_FALSE(decode_frame_header(buf, n - 1, h));
      REQUIRE(decode_frame_header(buf, n, h));
      CHECK(h.fin);
      CHECK(h.op == opcode::binary);
      CHECK(h.masked == masked);
      CHECK(h.payload_len == it.len);
      CHECK(h.header_len == n);
      if (masked) CHECK(std::equal(mask, mask + 4, h.mask));
    }
  }
}

TEST_CASE("websocket.apply_mask_split_offsets") {
  const std::uint8_t mask[4] = {0xA1, 0xB2, 0xC3, 0xD4};
  std::vector<std::uint8_t> plain(37);
  for (std::size_t i = 0; i < plain.size(); ++i) plain[i] = static_cast<std::uint8_t>(i);
  std::vector<std::uint8_t> whole = plain;
  apply_mask(whole.data(), whole.size(), mask);
  for (std::size_t i = 0; i < plain.size(); ++i) CHECK(whole[i] == (plain[i] ^ mask[i % 4]));
  for (std::size_t cut = 0; cut <= plain.size(); ++cut) {
    std::vector<std::uint8_t> split = plain;
    apply_mask(split.data(), cut, mask, 0);
    apply_mask(split.data() + cut, split.size() - cut, mask, cut);
    CHECK(split == whole);
  }
}

TEST_CASE("websocket.close_frame") {
  close_frame server = make_close_frame(close_going_away, false);
  REQUIRE(server.size == 4);
  CHECK(server.bytes[0] == 0x88);
  CHECK(server.bytes[1] == 0x02);
  CHECK(server.bytes[2] == 0x03);
  CHECK(server.bytes[3] == 0xE9);

  close_frame client = make_close_frame(close_normal, true);
  REQUIRE(client.size == 8);
  frame_header h;
  REQUIRE(decode_frame_header(client.bytes.data(), client.size, h));
  CHECK(h.op == opcode::close);
  CHECK(h.masked);
  CHECK(h.payload_len == 2);
  std::uint8_t payload[2] = {client.bytes[6], client.bytes[7]};
  apply_mask(payload, 2, h.mask);
  CHECK(payload[0] == 0x03);
  CHECK(payload[1] == 0xE8);
}

TEST_CASE("websocket.frame_tracker_whole_stream") {
  std::vector<std::uint8_t> stream;
  append_frame(stream, opcode::text, 5, true);
  append_frame(stream, opcode::binary, 200, false);     // 16-bit length
  append_frame(stream, opcode::binary, 70000, true);    // 64-bit length
  append_frame(stream, opcode::ping, 0, true);
  frame_tracker t;
  CHECK(t.at_boundary());
  t.feed(stream.data(), stream.size());
  CHECK(t.at_boundary());
  CHECK(t.bytes_to_boundary() == 0);
  CHECK_FALSE(t.saw_close());
}

TEST_CASE("websocket.frame_tracker_arbitrary_splits") {
  // Frames with every length encoding, masked and not, then a close frame.
  std::vector<std::uint8_t> stream;
  std::vector<std::size_t> boundaries;  // stream offsets where a frame ends
  std::vector<std::size_t> close_starts;
  const std::size_t lengths[] = {0, 1, 125, 126, 127, 300, 65535, 65536, 70001};
  bool masked = false;
  for (std::size_t len : lengths) {
    append_frame(stream, opcode::binary, len, masked);
    boundaries.push_back(stream.size());
    masked = !masked;
  }
  close_starts.push_back(stream.size());
  const close_frame c = make_close_frame(close_normal, true);
  stream.insert(stream.end(), c.bytes.begin(), c.bytes.begin() + static_cast<long>(c.size));
  boundaries.push_back(stream.size());

  auto is_boundary = [&](std::size_t off) {
    return off == 0 || std::find(boundaries.begin(), boundaries.end(), off) != boundaries.end();
  };

  std::mt19937 rng(1234);
  for (int round = 0; round < 200; ++round) {
    frame_tracker t;
    std::size_t pos = 0;
    // Mostly tiny pieces (to split headers byte by byte), sometimes large ones.
    std::uniform_int_distribution<std::size_t> small(1, 5);
    std::uniform_int_distribution<std::size_t> large(1, 20000);
    std::bernoulli_distribution pick_small(0.7);
    while (pos < stream.size()) {
      std::size_t piece = pick_small(rng) ? small(rng) : large(rng);
      piece = std::min(piece, stream.size() - pos);
      t.feed(stream.data() + pos, piece);
      pos += piece;
      CHECK(t.at_boundary() == is_boundary(pos));
      CHECK(t.saw_close() == (pos >= close_starts[0] + 2));
      if (!t.at_boundary() && t.bytes_to_boundary() > 0) {
        CHECK(is_boundary(pos + static_cast<std::size_t>(t.bytes_to_boundary())));
      }
    }
    CHECK(t.at_boundary());
    CHECK(t.saw_close());
  }
}

TEST_CASE("websocket.frame_tracker_byte_by_byte") {
  std::vector<std::uint8_t> stream;
  append_frame(stream, opcode::text, 3, true);
  append_frame(stream, opcode::binary, 65536, false);
  frame_tracker t;
  for (std::size_t i = 0; i < stream.size(); ++i) {
    t.feed(stream.data() + i, 1);
    const bool end_first = i + 1 == 2 + 4 + 3;
    const bool end_second = i + 1 == stream.size();
    CHECK(t.at_boundary() == (end_first || end_second));
  }
  // Halfway through the second header nothing is known about its length yet.
  frame_tracker u;
  u.feed(stream.data(), 9 + 3);
  CHECK_FALSE(u.at_boundary());
  CHECK(u.bytes_to_boundary() == 0);
  u.feed(stream.data() + 12, 7);  // completes the 10-byte header
  CHECK(u.bytes_to_boundary() == 65536);
}

namespace {

// A text frame, then a close frame with `code` and a reason, as a client (masked) or a
// server (unmasked) sends them.
std::vector<std::uint8_t> text_then_close(std::uint16_t code, bool masked) {
  std::vector<std::uint8_t> out;
  const std::uint8_t mask[4] = {0xA1, 0xB2, 0xC3, 0xD4};
  const std::uint8_t text[] = {'h', 'i'};
  const std::uint8_t close[] = {static_cast<std::uint8_t>(code >> 8),
                                static_cast<std::uint8_t>(code & 0xFF), 'b', 'y', 'e'};
  for (const auto& [op, payload, len] :
       {std::tuple{opcode::text, text, sizeof text}, std::tuple{opcode::close, close, sizeof close}}) {
    std::uint8_t header[max_frame_header];
    const std::size_t n = write_frame_header(header, op, len, masked ? mask : nullptr);
    out.insert(out.end(), header, header + n);
    for (std::size_t i = 0; i < len; ++i) {
      out.push_back(static_cast<std::uint8_t>(payload[i] ^ (masked ? mask[i % 4] : 0)));
    }
  }
  return out;
}

}  // namespace

TEST_CASE("websocket.tracker_reads_the_close_code_at_any_split") {
  for (const bool masked : {true, false}) {
    const std::vector<std::uint8_t> stream = text_then_close(4321, masked);
    for (std::size_t step = 1; step <= stream.size(); ++step) {
      frame_tracker t;
      for (std::size_t at = 0; at < stream.size(); at += step) {
        t.feed(stream.data() + at, std::min(step, stream.size() - at));
        if (at + step < stream.size() - 3) CHECK(t.close_code() == 0);
      }
      CHECK(t.saw_close());
      CHECK(t.at_boundary());
      CHECK(t.close_code() == 4321);
    }
  }
}

TEST_CASE("websocket.tracker_keeps_the_first_close_code") {
  std::vector<std::uint8_t> stream = text_then_close(1000, true);
  const std::vector<std::uint8_t> second = text_then_close(1011, true);
  stream.insert(stream.end(), second.begin(), second.end());
  frame_tracker t;
  t.feed(stream.data(), stream.size());
  CHECK(t.close_code() == 1000);
  // A close frame without a payload has no code.
  frame_tracker bare;
  std::uint8_t header[max_frame_header];
  const std::size_t n = write_frame_header(header, opcode::close, 0, nullptr);
  bare.feed(header, n);
  CHECK(bare.saw_close());
  CHECK(bare.close_code() == 0);
}
