#include "cluster/exchange.h"

#include <hiredis/hiredis.h>

namespace wslb::cluster {

namespace {

constexpr std::string_view node_key_prefix = "wslb:node:";

// KEYS[1] the member set, KEYS[2] our key; ARGV: node id, snapshot, ttl ms, node key prefix.
// Lua's `false` becomes a nil reply: "no previous value".
constexpr const char* exchange_script = R"lua(
local previous = redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3], 'GET')
redis.call('SADD', KEYS[1], ARGV[1])
local out = {previous or false}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if id ~= ARGV[1] then
    local value = redis.call('GET', ARGV[4] .. id)
    if value then out[#out + 1] = value else redis.call('SREM', KEYS[1], id) end
  end
end
return out
)lua";

}  // namespace

std::string node_key(std::string_view node_id) {
  return std::string(node_key_prefix) + std::string(node_id);
}

std::vector<std::string> exchange_command(const node_snapshot& own, std::uint32_t ttl_ms) {
  return {"EVAL",        exchange_script,     "2",
          std::string(members_key), node_key(own.node_id), own.node_id,
          encode(own),   std::to_string(ttl_ms), std::string(node_key_prefix)};
}

bool parse_exchange_reply(const redisReply* r, exchange_result& out, std::string& error) {
  if (!r) {
    error = "no reply";
    return false;
  }
  if (r->type == REDIS_REPLY_ERROR) {
    error = "Redis answered: " + std::string(r->str, r->len);
    return false;
  }
  if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
    error = "unexpected answer to the exchange (type " + std::to_string(r->type) + ")";
    return false;
  }
  exchange_result result;
  for (std::size_t i = 0; i < r->elements; ++i) {
    const redisReply* e = r->element[i];
    if (e->type == REDIS_REPLY_NIL && i == 0) continue;
    if (e->type != REDIS_REPLY_STRING) {
      error = "unexpected element in the exchange's answer (type " + std::to_string(e->type) + ")";
      return false;
    }
    std::optional<node_snapshot> s = decode(std::string_view(e->str, e->len));
    if (i == 0) {
      result.previous_own = std::move(s);
    } else if (s) {
      result.others.push_back(std::move(*s));
    } else {
      ++result.unreadable;
    }
  }
  out = std::move(result);
  return true;
}

}  // namespace wslb::cluster
