#include <doctest/doctest.h>

#include <string>

#include "supervisor/binary_upgrade.h"

using namespace wslb::supervisor;

TEST_CASE("binary_upgrade.inherited_descriptors_round_trip_through_the_variable") {
  const inherited_fds fds{3, 4, 5, 7};
  const std::string text = format_inherited_fds(fds);
  CHECK(text == "listen=3,lock=4,control=5,report=7");
  std::string error;
  const auto back = parse_inherited_fds(text, error);
  REQUIRE_MESSAGE(back.has_value(), error);
  CHECK(*back == fds);
  // Order does not matter.
  const auto shuffled = parse_inherited_fds("report=7,control=5,listen=3,lock=4", error);
  REQUIRE(shuffled.has_value());
  CHECK(*shuffled == fds);
  // The predecessor's stderr is named only when passed.
  inherited_fds with_log = fds;
  with_log.log = 8;
  CHECK(format_inherited_fds(with_log) == "listen=3,lock=4,control=5,report=7,log=8");
  const auto logged = parse_inherited_fds("listen=3,lock=4,control=5,report=7,log=8", error);
  REQUIRE_MESSAGE(logged.has_value(), error);
  CHECK(*logged == with_log);
}

TEST_CASE("binary_upgrade.a_malformed_variable_is_refused_saying_what_is_wrong") {
  std::string error;
  CHECK_FALSE(parse_inherited_fds("listen=3,lock=4,control=5", error).has_value());
  CHECK(error == "no report descriptor");
  CHECK_FALSE(parse_inherited_fds("listen=3,lock=4,control=5,report=x", error).has_value());
  CHECK(error == "bad descriptor 'x' for report");
  CHECK_FALSE(parse_inherited_fds("listen=3,lock=4,control=5,report=-1", error).has_value());
  CHECK_FALSE(parse_inherited_fds("listen=3,lock=4,control=5,report=7,shell=9", error).has_value());
  CHECK(error == "unknown item 'shell=9'");
  CHECK_FALSE(parse_inherited_fds("listen=3,lock=4,control=5,report=7,log=", error).has_value());
  CHECK(error == "bad descriptor '' for log");
  CHECK_FALSE(parse_inherited_fds("listen", error).has_value());
  CHECK_FALSE(parse_inherited_fds("", error).has_value());
}
