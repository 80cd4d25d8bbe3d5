#include <doctest/doctest.h>

#include <string>

#include "supervisor/binary_upgrade.h"

using namespace wslb::supervisor;

TEST_CASE("binary_upgrade.inherited_descriptors_round_trip_through_the_variable") {
  inherited_fds fds;
  fds.listen = 3;
  fds.lock = 4;
  fds.control = 5;
  fds.table = 6;
  fds.report = 7;
  const std::string text = format_inherited_fds(fds);
  CHECK(text == "listen=3,lock=4,control=5,table=6,report=7");
  std::string error;
  const auto back = parse_inherited_fds(text, error);
  REQUIRE_MESSAGE(back.has_value(), error);
  CHECK(*back == fds);
  // Order does not matter.
  const auto shuffled = parse_inherited_fds("report=7,table=6,control=5,listen=3,lock=4", error);
  REQUIRE(shuffled.has_value());
  CHECK(*shuffled == fds);
  // The predecessor's stderr, the admin listener and the state export are named only when
  // passed.
  inherited_fds with_optional = fds;
  with_optional.log = 8;
  with_optional.admin = 9;
  with_optional.state = 10;
  const std::string all = "listen=3,lock=4,control=5,table=6,report=7,log=8,admin=9,state=10";
  CHECK(format_inherited_fds(with_optional) == all);
  const auto parsed = parse_inherited_fds(all, error);
  REQUIRE_MESSAGE(parsed.has_value(), error);
  CHECK(*parsed == with_optional);
}

TEST_CASE("binary_upgrade.a_malformed_variable_is_refused_saying_what_is_wrong") {
  std::string error;
  CHECK_FALSE(parse_inherited_fds("listen=3,lock=4,control=5,table=6", error).has_value());
  CHECK(error == "no report descriptor");
  CHECK_FALSE(parse_inherited_fds("listen=3,lock=4,control=5,report=7", error).has_value());
  CHECK(error == "no table descriptor");
  const std::string base = "listen=3,lock=4,control=5,table=6,";
  CHECK_FALSE(parse_inherited_fds(base + "report=x", error).has_value());
  CHECK(error == "bad descriptor 'x' for report");
  CHECK_FALSE(parse_inherited_fds(base + "report=-1", error).has_value());
  CHECK_FALSE(parse_inherited_fds(base + "report=7,shell=9", error).has_value());
  CHECK(error == "unknown item 'shell=9'");
  CHECK_FALSE(parse_inherited_fds(base + "report=7,log=", error).has_value());
  CHECK(error == "bad descriptor '' for log");
  CHECK_FALSE(parse_inherited_fds("listen", error).has_value());
  CHECK_FALSE(parse_inherited_fds("", error).has_value());
}
