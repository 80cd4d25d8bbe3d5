#include "protocol/websocket.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstring>

namespace wslb::protocol {

namespace {

bool is_base64_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '/';
}

// Bytes a header takes, known once its first two bytes are in.
std::size_t header_size_from_first_two(const std::uint8_t* two) {
  std::size_t n = 2;
  const std::uint8_t len7 = two[1] & 0x7F;
  if (len7 == 126) {
    n += 2;
  } else if (len7 == 127) {
    n += 8;
  }
  if ((two[1] & 0x80) != 0) n += 4;
  return n;
}

}  // namespace

std::string websocket_accept(std::string_view key) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  std::string joined;
  joined.reserve(key.size() + websocket_guid.size());
  joined.append(key);
  joined.append(websocket_guid);
  if (EVP_Digest(joined.data(), joined.size(), digest, &digest_len, EVP_sha1(), nullptr) != 1) {
    return {};
  }
  // base64 of 20 bytes is 28 characters, plus the NUL EVP_EncodeBlock writes.
  unsigned char out[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
  const int n = EVP_EncodeBlock(out, digest, static_cast<int>(digest_len));
  return std::string(reinterpret_cast<const char*>(out), static_cast<std::size_t>(n));
}

bool valid_websocket_key(std::string_view key) {
  if (key.size() != 24 || key[22] != '=' || key[23] != '=') return false;
  return std::all_of(key.begin(), key.begin() + 22, is_base64_char);
}

std::string make_websocket_key() {
  unsigned char raw[16];
  if (RAND_bytes(raw, sizeof raw) != 1) return {};
  unsigned char out[25];
  const int n = EVP_EncodeBlock(out, raw, sizeof raw);
  return std::string(reinterpret_cast<const char*>(out), static_cast<std::size_t>(n));
}

std::size_t write_frame_header(std::uint8_t* out, opcode op, std::uint64_t payload_len,
                               const std::uint8_t* mask) {
  std::size_t n = 0;
  out[n++] = static_cast<std::uint8_t>(0x80 | static_cast<std::uint8_t>(op));
  const std::uint8_t mask_bit = mask != nullptr ? 0x80 : 0x00;
  if (payload_len < 126) {
    out[n++] = static_cast<std::uint8_t>(mask_bit | payload_len);
  } else if (payload_len <= 0xFFFF) {
    out[n++] = static_cast<std::uint8_t>(mask_bit | 126);
    out[n++] = static_cast<std::uint8_t>(payload_len >> 8);
    out[n++] = static_cast<std::uint8_t>(payload_len);
  } else {
    out[n++] = static_cast<std::uint8_t>(mask_bit | 127);
    for (int shift = 56; shift >= 0; shift -= 8) {
      out[n++] = static_cast<std::uint8_t>(payload_len >> shift);
    }
  }
  if (mask != nullptr) {
    std::memcpy(out + n, mask, 4);
    n += 4;
  }
  return n;
}

void apply_mask(std::uint8_t* data, std::size_t len, const std::uint8_t mask[4],
                std::size_t offset) {
  // Rotate the mask so that data[0] lines up with mask[offset % 4], then XOR eight bytes at a
  // time: this runs on every client frame of the load generator and the checker.
  std::uint8_t rotated[8];
  for (std::size_t i = 0; i < 8; ++i) rotated[i] = mask[(offset + i) & 3];
  std::uint64_t wide;
  std::memcpy(&wide, rotated, 8);
  std::size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    std::uint64_t chunk;
    std::memcpy(&chunk, data + i, 8);
    chunk ^= wide;
    std::memcpy(data + i, &chunk, 8);
  }
  for (; i < len; ++i) data[i] ^= rotated[i & 7];
}

close_frame make_close_frame(std::uint16_t code, bool masked) {
  close_frame f;
  std::uint8_t mask[4] = {0, 0, 0, 0};
  // A client must use an unpredictable mask; if the RNG fails a zero mask is still a valid frame.
  if (masked && RAND_bytes(mask, 4) != 1) std::memset(mask, 0, 4);
  std::size_t n = write_frame_header(f.bytes.data(), opcode::close, 2, masked ? mask : nullptr);
  f.bytes[n] = static_cast<std::uint8_t>(code >> 8);
  f.bytes[n + 1] = static_cast<std::uint8_t>(code);
  if (masked) apply_mask(f.bytes.data() + n, 2, mask);
  f.size = n + 2;
  return f;
}

bool decode_frame_header(const std::uint8_t* data, std::size_t len, frame_header& out) {
  if (len < 2) return false;
  const std::size_t need = header_size_from_first_two(data);
  if (len < need) return false;
  out.fin = (data[0] & 0x80) != 0;
  out.op = static_cast<opcode>(data[0] & 0x0F);
  out.masked = (data[1] & 0x80) != 0;
  const std::uint8_t len7 = data[1] & 0x7F;
  std::size_t pos = 2;
  if (len7 == 126) {
    out.payload_len = (std::uint64_t{data[2]} << 8) | data[3];
    pos = 4;
  } else if (len7 == 127) {
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < 8; ++i) v = (v << 8) | data[2 + i];
    out.payload_len = v;
    pos = 10;
  } else {
    out.payload_len = len7;
  }
  if (out.masked) {
    std::memcpy(out.mask, data + pos, 4);
    pos += 4;
  } else {
    std::memset(out.mask, 0, 4);
  }
  out.header_len = pos;
  return true;
}

void frame_tracker::feed(const std::uint8_t* data, std::size_t len) {
  while (len > 0) {
    while (code_left_ > 0 && payload_left_ > 0 && len > 0) {
      close_code_ = static_cast<std::uint16_t>(
          (close_code_ << 8) | (*data ^ code_mask_[2 - code_left_]));
      --code_left_;
      --payload_left_;
      ++data;
      --len;
    }
    if (payload_left_ > 0) {
      const std::size_t skip =
          payload_left_ < len ? static_cast<std::size_t>(payload_left_) : len;
      payload_left_ -= skip;
      data += skip;
      len -= skip;
      continue;
    }
    frame_header h;
    if (header_have_ == 0 && decode_frame_header(data, len, h)) {
      // Common case: the whole header is in this read; nothing to copy.
      data += h.header_len;
      len -= h.header_len;
    } else {
      // A header split across reads: gather just its bytes (at most 14).
      std::size_t need = header_have_ < 2 ? 2 : header_size_from_first_two(header_);
      while (len > 0 && header_have_ < need) {
        header_[header_have_++] = *data++;
        --len;
        if (header_have_ == 2) need = header_size_from_first_two(header_);
      }
      if (header_have_ < need) return;
      decode_frame_header(header_, header_have_, h);
      header_have_ = 0;
    }
    payload_left_ = h.payload_len;
    if (h.op == opcode::close && !saw_close_ && h.payload_len >= 2) {
      code_left_ = 2;
      code_mask_[0] = h.mask[0];  // zero when unmasked
      code_mask_[1] = h.mask[1];
    }
    if (h.op == opcode::close) saw_close_ = true;
  }
}

}  // namespace wslb::protocol
