// The handover wire format: what an old worker sends a new one about each established tunnel it
// passes on (the two descriptors travel beside it, as SCM_RIGHTS), and the hello the receiver
// answers first, so that a sender never sends a record the receiver cannot read. One message
// per SOCK_SEQPACKET packet; integers little-endian; every record starts with the magic and the
// format version. Pure: encoding and decoding only, no sockets. Used by the workers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/access_text.h"

namespace wslb::handover {

inline constexpr std::uint32_t magic = 0x4F485357;  // "WSHO" little-endian
// Bump on ANY change to the records below (or to the meaning of an opaque field such as the
// stream watch): a receiver of another version is not sent anything; the sender drains.
// 3: the frame trackers in the stream watch keep the first close frame's code (access log).
// 4: the access log's record of the tunnel (flag_access).
// 5: a chosen close cause and client close code (flag_cause_noted).
#ifndef WSLB_NEXT_HANDOVER_FORMAT
inline constexpr std::uint16_t format_version = 5;
#else
// Only the test build wslb-next-handover (tests/next_layout): a real binary whose workers speak
// another format, to check that an upgrade to it drains and says so. Never shipped.
inline constexpr std::uint16_t format_version = 5 + 1000;
#endif
// The largest unwritten remainder a record carries per direction; a connection with more
// queued stays where it is until it has written some.
inline constexpr std::size_t max_unwritten = 64 * 1024;
inline constexpr std::size_t max_watch_bytes = 64;
// The access log's texts (worker/access_record.h bounds each; this is their sum, with room).
inline constexpr std::size_t max_access_text = 4096;
inline constexpr std::size_t max_record_bytes =
    256 + max_watch_bytes + max_access_text + 2 * max_unwritten;

// The receiver's first message on a new handover connection.
struct hello {
  std::uint16_t version = format_version;
  std::uint32_t generation = 0;  // the receiving worker's generation
};

// One tunnel's state, as the sending worker's session holds it.
struct tunnel_record {
  std::uint8_t kind = 0;            // worker::connection_kind
  std::uint8_t flags = 0;           // flag_* below
  std::uint8_t eof_mask = 0;        // per direction bits, as in worker::session
  std::uint8_t shut_sent_mask = 0;
  std::uint8_t shut_done_mask = 0;
  std::uint8_t finishing_mask = 0;
  std::uint8_t done_mask = 0;
  std::uint8_t close_cause = 0;     // shm::close_cause, with flag_cause_noted
  std::uint16_t backend_row = 0;    // the backend's row in the shared table
  std::uint16_t last_status = 0;
  std::uint16_t client_close_code = 0;  // a graceful close's code to the client (0: 1001)
  std::uint32_t requests = 0;
  std::uint32_t idle_ms = 0;        // since the last read (the idle timeout goes on from there)
  std::uint32_t close_in_ms = 0;    // graceful close: time left before it gives up waiting
  std::uint64_t source_key = 0;     // the client's source as --max-connections-per-source
                                    // counts it (0: not counted)
  // What rebalancing asks of a tunnel (worker/shedding.h): how long ago it was accepted (the
  // minimum age, and no client shed twice within it), and the hash-balancing key it was placed
  // by (flag_sticky_key; in the hash modes only a key that now maps elsewhere is shed).
  std::uint32_t age_ms = 0;
  std::uint64_t sticky_key = 0;
  std::string backend_address;      // "HOST:PORT", checked against the receiver's row
  std::string watch;                // the stream watch (sniffer or frame trackers), opaque
  std::string unwritten[2];         // bytes queued but not yet written, by direction
  // The access log's record (flag_access): the line the receiver writes when the tunnel ends
  // goes on from what the sender counted.
  // When what the line covers began: uv_hrtime(), CLOCK_MONOTONIC, which every process of the
  // machine reads alike (an age would lose the time the record spends in transit).
  std::uint64_t access_started_ns = 0;
  std::uint64_t access_bytes_in = 0;
  std::uint64_t access_bytes_out = 0;  // unwritten[to client] included
  access_text access;
};

inline constexpr std::uint8_t flag_upgraded = 1;
inline constexpr std::uint8_t flag_sniffing = 2;
inline constexpr std::uint8_t flag_graceful = 4;
inline constexpr std::uint8_t flag_sticky_key = 8;  // sticky_key holds the key it was placed by
inline constexpr std::uint8_t flag_pinned = 16;     // placed by the affinity cookie: never shed
inline constexpr std::uint8_t flag_access = 32;     // the access_* fields hold its log record
inline constexpr std::uint8_t flag_cause_noted = 64;  // close_cause was chosen (closing already)

std::string encode(const hello& h);
std::string encode(const tunnel_record& r);

// Decoding says why a message is refused, in words for the log.
struct decode_error {
  std::string why;
};

// A hello of any version decodes (the caller compares versions); a bad magic or length does not.
std::optional<hello> decode_hello(std::string_view bytes, decode_error& error);
// Only a record of format_version decodes.
std::optional<tunnel_record> decode_record(std::string_view bytes, decode_error& error);

// Where the worker in `row` of instance `name` listens for handovers, inside the instance's
// private runtime directory `dir`.
std::string socket_path(const std::string& dir, const std::string& name, std::size_t row);

}  // namespace wslb::handover
