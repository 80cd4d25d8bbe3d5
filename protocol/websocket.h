// WebSocket (RFC 6455) pieces that the worker, the checker, the demo echo backend and the
// load generator share: the handshake's accept key, frame headers, and a tracker that follows
// frame boundaries in a relayed byte stream without buffering it.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace wslb::protocol {

inline constexpr std::string_view websocket_guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

// Sec-WebSocket-Accept for a Sec-WebSocket-Key: base64(SHA-1(key + GUID)), via OpenSSL.
std::string websocket_accept(std::string_view key);

// True when `key` is a valid Sec-WebSocket-Key: base64 of exactly 16 bytes (24 characters,
// ending in "==").
bool valid_websocket_key(std::string_view key);

// A fresh random Sec-WebSocket-Key (base64 of 16 random bytes).
std::string make_websocket_key();

enum class opcode : std::uint8_t {
  continuation = 0x0, text = 0x1, binary = 0x2, close = 0x8, ping = 0x9, pong = 0xA
};

inline constexpr std::uint16_t close_normal = 1000;
inline constexpr std::uint16_t close_going_away = 1001;

// Largest frame header: 2 + 8 (length) + 4 (mask).
inline constexpr std::size_t max_frame_header = 14;

// Writes a FIN frame header for `payload_len` bytes into `out` and returns its length.
// With `mask` non-null the frame is masked with those 4 bytes (client -> server frames must be);
// the caller masks the payload itself (see apply_mask).
std::size_t write_frame_header(std::uint8_t* out, opcode op, std::uint64_t payload_len,
                               const std::uint8_t* mask);

// XORs `data` with the 4-byte mask, starting at mask position `offset` (for split payloads).
void apply_mask(std::uint8_t* data, std::size_t len, const std::uint8_t mask[4],
                std::size_t offset = 0);

// A complete close frame with `code` (2-byte payload), masked when `masked` (towards a server),
// ready to write. At most 8 bytes.
struct close_frame {
  std::array<std::uint8_t, 8> bytes{};
  std::size_t size = 0;
};
close_frame make_close_frame(std::uint16_t code, bool masked);

// A parsed frame header (decode_frame_header).
struct frame_header {
  bool fin = false;
  opcode op = opcode::continuation;
  bool masked = false;
  std::uint8_t mask[4] = {};
  std::uint64_t payload_len = 0;
  std::size_t header_len = 0;  // bytes the header took
};

// Decodes a frame header from the start of `data`. Returns false when more bytes are needed.
bool decode_frame_header(const std::uint8_t* data, std::size_t len, frame_header& out);

// Follows frame boundaries in one direction of a relayed WebSocket stream, so that a frame of
// our own (a close frame at drain time) is only ever inserted between two frames. Keeps 16
// bytes of state; never copies the stream.
class frame_tracker {
 public:
  // Advances over `len` bytes of the stream.
  void feed(const std::uint8_t* data, std::size_t len);
  // True when the bytes fed so far end exactly at a frame boundary.
  bool at_boundary() const { return header_have_ == 0 && payload_left_ == 0; }
  // Bytes from the current position to the end of the current frame, when the current frame's
  // header has been seen whole; 0 at a boundary or while a header is incomplete.
  std::uint64_t bytes_to_boundary() const { return payload_left_; }
  // True when a close frame has been seen in the stream (either direction's peer said goodbye).
  bool saw_close() const { return saw_close_; }
  // The status code of the first close frame, once its two payload bytes have gone by (for
  // the access log); 0 before that, or when that frame carried no code.
  std::uint16_t close_code() const { return code_left_ == 0 ? close_code_ : 0; }

 private:
  std::uint64_t payload_left_ = 0;
  std::uint8_t header_[max_frame_header] = {};
  std::uint8_t header_have_ = 0;
  bool saw_close_ = false;
  // The first close frame's code, gathered (and unmasked) as its payload streams by.
  std::uint8_t code_left_ = 0;  // code bytes still to read
  std::uint8_t code_mask_[2] = {};
  std::uint16_t close_code_ = 0;
};

}  // namespace wslb::protocol
