#include "common/handover_format.h"

namespace wslb::handover {

namespace {

enum class message_type : std::uint8_t { hello = 1, tunnel = 2 };

class writer {
 public:
  template <typename T>
  void put(T v) {
    for (std::size_t i = 0; i < sizeof(T); ++i) {
      out_.push_back(static_cast<char>((static_cast<std::uint64_t>(v) >> (8 * i)) & 0xFF));
    }
  }
  void put_bytes(std::string_view b) {
    put(static_cast<std::uint32_t>(b.size()));
    out_.append(b);
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

class reader {
 public:
  explicit reader(std::string_view in) : in_(in) {}
  template <typename T>
  bool get(T& v) {
    if (in_.size() - at_ < sizeof(T)) return false;
    std::uint64_t x = 0;
    for (std::size_t i = 0; i < sizeof(T); ++i) {
      x |= static_cast<std::uint64_t>(static_cast<unsigned char>(in_[at_ + i])) << (8 * i);
    }
    at_ += sizeof(T);
    v = static_cast<T>(x);
    return true;
  }
  bool get_bytes(std::string& out, std::size_t limit) {
    std::uint32_t n = 0;
    if (!get(n) || n > limit || in_.size() - at_ < n) return false;
    out.assign(in_.substr(at_, n));
    at_ += n;
    return true;
  }
  bool done() const { return at_ == in_.size(); }

 private:
  std::string_view in_;
  std::size_t at_ = 0;
};

void put_header(writer& w, message_type type, std::uint16_t version) {
  w.put(magic);
  w.put(version);
  w.put(static_cast<std::uint8_t>(type));
}

// Reads the common header; false (with the reason) when it is not one of ours of `type`.
bool get_header(reader& r, message_type type, std::uint16_t& version, decode_error& error) {
  std::uint32_t m = 0;
  std::uint8_t t = 0;
  if (!r.get(m) || m != magic) {
    error.why = "not a handover message (bad magic)";
    return false;
  }
  if (!r.get(version) || !r.get(t)) {
    error.why = "truncated header";
    return false;
  }
  if (t != static_cast<std::uint8_t>(type)) {
    error.why = "unexpected message type " + std::to_string(t);
    return false;
  }
  return true;
}

}  // namespace

std::string encode(const hello& h) {
  writer w;
  put_header(w, message_type::hello, h.version);
  w.put(h.generation);
  return w.take();
}

std::string encode(const tunnel_record& rec) {
  writer w;
  put_header(w, message_type::tunnel, format_version);
  w.put(rec.kind);
  w.put(rec.flags);
  w.put(rec.eof_mask);
  w.put(rec.shut_sent_mask);
  w.put(rec.shut_done_mask);
  w.put(rec.finishing_mask);
  w.put(rec.done_mask);
  w.put(rec.close_cause);
  w.put(rec.backend_row);
  w.put(rec.last_status);
  w.put(rec.client_close_code);
  w.put(rec.requests);
  w.put(rec.idle_ms);
  w.put(rec.close_in_ms);
  w.put(rec.source_key);
  w.put(rec.age_ms);
  w.put(rec.sticky_key);
  w.put_bytes(rec.backend_address);
  w.put_bytes(rec.watch);
  w.put_bytes(rec.unwritten[0]);
  w.put_bytes(rec.unwritten[1]);
  w.put(rec.access_started_ns);
  w.put(rec.access_bytes_in);
  w.put(rec.access_bytes_out);
  for (const std::string* text : rec.access.fields()) w.put_bytes(*text);
  return w.take();
}

std::optional<hello> decode_hello(std::string_view bytes, decode_error& error) {
  reader r(bytes);
  hello h;
  if (!get_header(r, message_type::hello, h.version, error)) return std::nullopt;
  if (!r.get(h.generation) || !r.done()) {
    error.why = "malformed hello";
    return std::nullopt;
  }
  return h;
}

std::optional<tunnel_record> decode_record(std::string_view bytes, decode_error& error) {
  reader r(bytes);
  std::uint16_t version = 0;
  if (!get_header(r, message_type::tunnel, version, error)) return std::nullopt;
  if (version != format_version) {
    error.why = "format version " + std::to_string(version) + ", expected " +
                std::to_string(format_version);
    return std::nullopt;
  }
  tunnel_record rec;
  bool ok = r.get(rec.kind) && r.get(rec.flags) && r.get(rec.eof_mask) &&
                  r.get(rec.shut_sent_mask) && r.get(rec.shut_done_mask) &&
                  r.get(rec.finishing_mask) && r.get(rec.done_mask) && r.get(rec.close_cause) &&
                  r.get(rec.backend_row) && r.get(rec.last_status) &&
                  r.get(rec.client_close_code) && r.get(rec.requests) && r.get(rec.idle_ms) &&
                  r.get(rec.close_in_ms) && r.get(rec.source_key) && r.get(rec.age_ms) &&
                  r.get(rec.sticky_key) && r.get_bytes(rec.backend_address, 256) &&
                  r.get_bytes(rec.watch, max_watch_bytes) &&
                  r.get_bytes(rec.unwritten[0], max_unwritten) &&
                  r.get_bytes(rec.unwritten[1], max_unwritten) && r.get(rec.access_started_ns) &&
                  r.get(rec.access_bytes_in) && r.get(rec.access_bytes_out);
  for (std::string* text : rec.access.fields()) ok = ok && r.get_bytes(*text, max_access_text);
  ok = ok && r.done();
  if (!ok) {
    error.why = "malformed tunnel record";
    return std::nullopt;
  }
  if (((rec.eof_mask | rec.shut_sent_mask | rec.shut_done_mask | rec.finishing_mask |
        rec.done_mask) & ~3u) != 0) {
    error.why = "direction bits out of range";
    return std::nullopt;
  }
  return rec;
}

std::string socket_path(const std::string& dir, const std::string& name, std::size_t row) {
  return dir + "/" + name + ".handover." + std::to_string(row);
}

}  // namespace wslb::handover
