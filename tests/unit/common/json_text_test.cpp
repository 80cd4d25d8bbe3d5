#include <doctest/doctest.h>

#include <string>

#include "common/json_text.h"

TEST_CASE("json_text.keeps_utf8_and_escapes_what_is_not") {
  CHECK(wslb::json_string("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80") ==
        "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
  // A lone continuation byte, a truncated sequence, an overlong form, a surrogate, > U+10FFFF.
  CHECK(wslb::json_string("\x80") == "\"\\u0080\"");
  CHECK(wslb::json_string("\xe2\x82") == "\"\\u00e2\\u0082\"");
  CHECK(wslb::json_string("\xc0\xaf") == "\"\\u00c0\\u00af\"");
  CHECK(wslb::json_string("\xed\xa0\x80") == "\"\\u00ed\\u00a0\\u0080\"");
  CHECK(wslb::json_string("\xf4\x90\x80\x80") == "\"\\u00f4\\u0090\\u0080\\u0080\"");
  CHECK(wslb::json_string(std::string("a\0b", 3)) == "\"a\\u0000b\"");
}
