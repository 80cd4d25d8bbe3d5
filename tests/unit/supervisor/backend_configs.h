// Test support: a configuration with the backends `specs` ("127.0.0.1:9001,weight=2"), parsed
// as `--backend` values are, for the supervisor's unit tests.
#pragma once

#include <doctest/doctest.h>

#include <initializer_list>
#include <string>

#include "common/config.h"
#include "common/parse.h"

namespace wslb::testing {

inline config config_with_backends(std::initializer_list<const char*> specs) {
  config c;
  std::string err;
  for (const char* s : specs) {
    backend_config b;
    REQUIRE(parse_backend(s, b, err));
    c.backends.push_back(b);
  }
  return c;
}

}  // namespace wslb::testing
