#include <doctest/doctest.h>

#include <hiredis/hiredis.h>

#include "cluster/exchange.h"

using namespace wslb::cluster;

namespace {

// Hand-built replies, the shapes hiredis hands the agent.
struct fake_reply {
  std::vector<std::string> texts;
  std::vector<redisReply> elements;
  std::vector<redisReply*> pointers;
  redisReply top{};

  explicit fake_reply(std::vector<std::string> values, bool first_nil) : texts(std::move(values)) {
    elements.resize(texts.size());
    for (std::size_t i = 0; i < texts.size(); ++i) {
      elements[i] = redisReply{};
      elements[i].type = (i == 0 && first_nil) ? REDIS_REPLY_NIL : REDIS_REPLY_STRING;
      elements[i].str = texts[i].data();
      elements[i].len = texts[i].size();
      pointers.push_back(&elements[i]);
    }
    top.type = REDIS_REPLY_ARRAY;
    top.elements = pointers.size();
    top.element = pointers.data();
  }
};

}  // namespace

TEST_CASE("exchange.command_publishes_our_key_with_a_lifetime") {
  node_snapshot own{"web-a", 7, 1, 5, {{"h:1", 2}}};
  const auto argv = exchange_command(own, 1500);
  REQUIRE(argv.size() == 9);
  CHECK(argv[0] == "EVAL");
  CHECK(argv[2] == "2");
  CHECK(argv[3] == "wslb:nodes");
  CHECK(argv[4] == "wslb:node:web-a");
  CHECK(argv[5] == "web-a");
  CHECK(decode(argv[6])->counts == own.counts);
  CHECK(argv[7] == "1500");
}

TEST_CASE("exchange.reply_gives_previous_own_and_the_others") {
  const std::string b = encode(node_snapshot{"b", 1, 3, 0, {{"h:1", 4}}});
  fake_reply r({"", b, "garbage"}, true);
  exchange_result out;
  std::string error;
  REQUIRE(parse_exchange_reply(&r.top, out, error));
  CHECK_FALSE(out.previous_own);
  REQUIRE(out.others.size() == 1);
  CHECK(out.others[0].node_id == "b");
  CHECK(out.unreadable == 1);

  fake_reply with_previous({encode(node_snapshot{"a", 9, 1, 0, {}})}, false);
  REQUIRE(parse_exchange_reply(&with_previous.top, out, error));
  REQUIRE(out.previous_own);
  CHECK(out.previous_own->boot == 9);
}

TEST_CASE("exchange.other_answers_are_errors") {
  exchange_result out;
  std::string error;
  redisReply err{};
  std::string text = "NOSCRIPT scripting is disabled";
  err.type = REDIS_REPLY_ERROR;
  err.str = text.data();
  err.len = text.size();
  CHECK_FALSE(parse_exchange_reply(&err, out, error));
  CHECK(error == "Redis answered: NOSCRIPT scripting is disabled");
  redisReply integer{};
  integer.type = REDIS_REPLY_INTEGER;
  CHECK_FALSE(parse_exchange_reply(&integer, out, error));
  fake_reply empty({}, false);
  CHECK_FALSE(parse_exchange_reply(&empty.top, out, error));
  CHECK_FALSE(parse_exchange_reply(nullptr, out, error));
}
