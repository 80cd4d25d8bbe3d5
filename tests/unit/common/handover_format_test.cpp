#include <doctest/doctest.h>

#include <string>

#include "common/handover_format.h"

using namespace wslb;

namespace {

handover::tunnel_record sample_record() {
  handover::tunnel_record r;
  r.kind = 2;
  r.flags = handover::flag_upgraded | handover::flag_graceful | handover::flag_sticky_key |
            handover::flag_pinned | handover::flag_access | handover::flag_cause_noted;
  r.eof_mask = 1;
  r.shut_sent_mask = 2;
  r.shut_done_mask = 2;
  r.finishing_mask = 1;
  r.done_mask = 2;
  r.close_cause = 5;
  r.client_close_code = 1012;
  r.backend_row = 7;
  r.last_status = 101;
  r.requests = 3;
  r.idle_ms = 1234;
  r.close_in_ms = 800;
  r.source_key = 0xFEDCBA9876543210ull;
  r.age_ms = 61'000;
  r.sticky_key = 0x0123456789ABCDEFull;
  r.backend_address = "127.0.0.1:9001";
  r.watch = std::string("\x01\x00\x7f\xff", 4);
  r.unwritten[0] = "to the backend";
  r.unwritten[1] = std::string(handover::max_unwritten, 'x');
  // The access log's texts at the longest the worker keeps them.
  r.access_started_ns = 3'600'000'000'123;
  r.access_bytes_in = 1'000'001;
  r.access_bytes_out = 2'000'002;
  r.access.client = "[2001:db8::1]:41234";
  r.access.forwarded_for = std::string(512, 'f');
  r.access.method = std::string(32, 'M');
  r.access.path = std::string(2048, 'p');
  r.access.host = std::string(512, 'h');
  r.access.user_agent = std::string(512, 'u');
  return r;
}

}  // namespace

TEST_CASE("handover_format.record_round_trips_every_field") {
  const handover::tunnel_record in = sample_record();
  const std::string bytes = handover::encode(in);
  CHECK(bytes.size() <= handover::max_record_bytes);
  handover::decode_error error;
  const auto out = handover::decode_record(bytes, error);
  REQUIRE_MESSAGE(out.has_value(), error.why);
  CHECK(out->kind == in.kind);
  CHECK(out->flags == in.flags);
  CHECK(out->eof_mask == in.eof_mask);
  CHECK(out->shut_sent_mask == in.shut_sent_mask);
  CHECK(out->shut_done_mask == in.shut_done_mask);
  CHECK(out->finishing_mask == in.finishing_mask);
  CHECK(out->done_mask == in.done_mask);
  CHECK(out->close_cause == in.close_cause);
  CHECK(out->client_close_code == in.client_close_code);
  CHECK(out->backend_row == in.backend_row);
  CHECK(out->last_status == in.last_status);
  CHECK(out->requests == in.requests);
  CHECK(out->idle_ms == in.idle_ms);
  CHECK(out->close_in_ms == in.close_in_ms);
  CHECK(out->source_key == in.source_key);
  CHECK(out->age_ms == in.age_ms);
  CHECK(out->sticky_key == in.sticky_key);
  CHECK(out->backend_address == in.backend_address);
  CHECK(out->watch == in.watch);
  CHECK(out->unwritten[0] == in.unwritten[0]);
  CHECK(out->unwritten[1] == in.unwritten[1]);
  CHECK(out->access_started_ns == in.access_started_ns);
  CHECK(out->access_bytes_in == in.access_bytes_in);
  CHECK(out->access_bytes_out == in.access_bytes_out);
  for (std::size_t i = 0; i < in.access.fields().size(); ++i) {
    CHECK(*out->access.fields()[i] == *in.access.fields()[i]);
  }
}

TEST_CASE("handover_format.refuses_other_versions_truncation_and_garbage") {
  std::string bytes = handover::encode(sample_record());
  handover::decode_error error;
  // The version is the two bytes after the magic.
  std::string other = bytes;
  other[4] = static_cast<char>(handover::format_version + 1);
  CHECK_FALSE(handover::decode_record(other, error).has_value());
  CHECK(error.why.find("format version") != std::string::npos);
  for (std::size_t cut : {std::size_t{0}, std::size_t{3}, std::size_t{12}, bytes.size() - 1}) {
    CHECK_FALSE(handover::decode_record(bytes.substr(0, cut), error).has_value());
  }
  CHECK_FALSE(handover::decode_record(bytes + "x", error).has_value());
  std::string bad_magic = bytes;
  bad_magic[0] ^= 0x20;
  CHECK_FALSE(handover::decode_record(bad_magic, error).has_value());
  CHECK(error.why.find("magic") != std::string::npos);
  // A direction mask beyond the two directions is refused, not trusted as a bit pattern.
  handover::tunnel_record r = sample_record();
  r.eof_mask = 4;
  CHECK_FALSE(handover::decode_record(handover::encode(r), error).has_value());
  // An unwritten remainder larger than any sender queues is refused.
  r = sample_record();
  r.unwritten[0] = std::string(handover::max_unwritten + 1, 'y');
  CHECK_FALSE(handover::decode_record(handover::encode(r), error).has_value());
}

TEST_CASE("handover_format.hello_of_any_version_decodes_and_a_record_is_not_a_hello") {
  handover::hello h;
  h.version = 9;
  h.generation = 42;
  handover::decode_error error;
  const auto out = handover::decode_hello(handover::encode(h), error);
  REQUIRE(out.has_value());
  CHECK(out->version == 9);
  CHECK(out->generation == 42);
  CHECK_FALSE(handover::decode_hello(handover::encode(sample_record()), error).has_value());
  CHECK(error.why.find("type") != std::string::npos);
}
