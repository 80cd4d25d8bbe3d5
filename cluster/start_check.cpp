#include "cluster/start_check.h"

#include <hiredis/hiredis.h>

#include <memory>
#include <vector>

namespace wslb::cluster {

namespace {

struct context_deleter {
  void operator()(redisContext* c) const { redisFree(c); }
};
struct reply_deleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using reply_ptr = std::unique_ptr<redisReply, reply_deleter>;

reply_ptr run(redisContext* c, const std::vector<std::string>& argv) {
  std::vector<const char*> args;
  std::vector<std::size_t> lengths;
  for (const std::string& a : argv) {
    args.push_back(a.data());
    lengths.push_back(a.size());
  }
  return reply_ptr(static_cast<redisReply*>(
      redisCommandArgv(c, static_cast<int>(args.size()), args.data(), lengths.data())));
}

// A step that got no reply: a timeout or a reset means unreachable, anything else (a protocol
// error: bytes that are not RESP) means the server is not a Redis.
start_check_result no_reply(const redisContext* c, const std::string& step) {
  const bool transport = c->err == REDIS_ERR_IO || c->err == REDIS_ERR_EOF;
  return {transport ? start_verdict::unreachable : start_verdict::refused,
          step + ": " + (transport ? "" : "not a Redis server? ") + c->errstr};
}

}  // namespace

start_check_result check_redis_at_start(const redis_target& target, std::uint32_t timeout_ms) {
  const timeval tv{static_cast<time_t>(timeout_ms / 1000),
                   static_cast<suseconds_t>((timeout_ms % 1000) * 1000)};
  std::unique_ptr<redisContext, context_deleter> c(
      redisConnectWithTimeout(target.host.c_str(), target.port, tv));
  if (!c) return {start_verdict::unreachable, "cannot allocate a connection"};
  if (c->err) return {start_verdict::unreachable, std::string("connect: ") + c->errstr};
  redisSetTimeout(c.get(), tv);

  if (!target.password.empty()) {
    std::vector<std::string> auth{"AUTH"};
    if (!target.user.empty()) auth.push_back(target.user);
    auth.push_back(target.password);
    const reply_ptr r = run(c.get(), auth);
    if (!r) return no_reply(c.get(), "AUTH");
    if (r->type == REDIS_REPLY_ERROR) {
      return {start_verdict::refused, "AUTH refused: " + std::string(r->str, r->len)};
    }
  }
  if (target.db != 0) {
    const reply_ptr r = run(c.get(), {"SELECT", std::to_string(target.db)});
    if (!r) return no_reply(c.get(), "SELECT");
    if (r->type == REDIS_REPLY_ERROR) {
      return {start_verdict::refused, "SELECT refused: " + std::string(r->str, r->len)};
    }
  }
  const reply_ptr r = run(c.get(), {"EVAL", "return 'wslb'", "0"});
  if (!r) return no_reply(c.get(), "EVAL");
  if (r->type == REDIS_REPLY_ERROR) {
    return {start_verdict::refused, "EVAL refused: " + std::string(r->str, r->len)};
  }
  if (r->type != REDIS_REPLY_STRING || std::string(r->str, r->len) != "wslb") {
    return {start_verdict::refused, "EVAL of a trivial script did not answer as Redis does"};
  }
  return {};
}

}  // namespace wslb::cluster
