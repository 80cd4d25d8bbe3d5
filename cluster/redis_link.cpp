#include "cluster/redis_link.h"

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <algorithm>
#include <memory>
#include <utility>

namespace wslb::cluster {

namespace {

// Reconnect attempts start quickly (a Redis restart is short) and slow down to this.
constexpr std::uint32_t first_backoff_ms = 100;
constexpr std::uint32_t max_backoff_ms = 2000;

std::string reply_text(const redisReply* r) {
  if (!r) return "no reply";
  if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS ||
      r->type == REDIS_REPLY_ERROR) {
    return std::string(r->str, r->len);
  }
  return "reply of type " + std::to_string(r->type);
}

}  // namespace

struct redis_link::pending {
  redis_link* link;
  std::function<void(redisReply*)> done;
};

redis_link::redis_link(uv_loop_t* loop, redis_target target, std::uint32_t deadline_ms, events ev)
    : loop_(loop), target_(std::move(target)), deadline_ms_(deadline_ms), events_(std::move(ev)) {
  for (uv_timer_t* t : {&retry_timer_, &deadline_, &drop_timer_}) {
    uv_timer_init(loop_, t);
    t->data = this;
  }
}

redis_link::~redis_link() = default;

void redis_link::start() { connect(); }

void redis_link::close() {
  if (phase_ == phase::closed) return;
  phase_ = phase::closed;
  for (uv_timer_t* t : {&retry_timer_, &deadline_, &drop_timer_}) {
    uv_close(reinterpret_cast<uv_handle_t*>(t), nullptr);
  }
  if (redisAsyncContext* c = std::exchange(context_, nullptr)) redisAsyncFree(c);
}

void redis_link::connect() {
  if (phase_ == phase::closed) return;
  phase_ = phase::connecting;
  in_flight_ = 0;
  // A host name is resolved here, blocking: this process has nothing else to do meanwhile.
  redisAsyncContext* c = redisAsyncConnect(target_.host.c_str(), target_.port);
  if (!c || c->err) {
    const std::string why = c ? c->errstr : "cannot allocate a connection";
    if (c) redisAsyncFree(c);
    phase_ = phase::idle;
    events_.on_lost("connect: " + why);
    schedule_retry();
    return;
  }
  c->data = this;
  context_ = c;
  redisLibuvAttach(c, loop_);
  redisAsyncSetConnectCallback(c, on_connect);
  redisAsyncSetDisconnectCallback(c, on_disconnect);
  arm_deadline();
}

void redis_link::on_connect(const redisAsyncContext* c, int status) {
  auto* self = static_cast<redis_link*>(c->data);
  if (c != self->context_) return;
  if (status != REDIS_OK) {
    // hiredis frees the context when this callback returns.
    self->context_ = nullptr;
    self->phase_ = phase::idle;
    uv_timer_stop(&self->deadline_);
    self->events_.on_lost(std::string("connect: ") + c->errstr);
    self->schedule_retry();
    return;
  }
  self->send_handshake();
}

void redis_link::on_disconnect(const redisAsyncContext* c, int status) {
  auto* self = static_cast<redis_link*>(c->data);
  if (c != self->context_) return;  // one we dropped ourselves
  self->context_ = nullptr;
  self->phase_ = phase::idle;
  self->in_flight_ = 0;
  uv_timer_stop(&self->deadline_);
  self->events_.on_lost(status == REDIS_OK ? std::string("Redis closed the connection")
                                           : std::string(c->errstr));
  self->schedule_retry();
}

void redis_link::send_handshake() {
  phase_ = phase::handshake;
  const auto refused = [this](const char* step) {
    return [this, step](redisReply* r) {
      if (!r || phase_ != phase::handshake) return;
      if (r->type == REDIS_REPLY_ERROR) fail(std::string(step) + " refused: " + reply_text(r));
    };
  };
  if (!target_.password.empty()) {
    std::vector<std::string> auth{"AUTH"};
    if (!target_.user.empty()) auth.push_back(target_.user);
    auth.push_back(target_.password);
    send(auth, refused("AUTH"));
  }
  if (target_.db != 0) send({"SELECT", std::to_string(target_.db)}, refused("SELECT"));
  send({"PING"}, [this](redisReply* r) {
    if (!r || phase_ != phase::handshake) return;
    if (r->type != REDIS_REPLY_STATUS || reply_text(r) != "PONG") {
      return fail("PING answered '" + reply_text(r) + "', not PONG");
    }
    phase_ = phase::ready;
    backoff_ms_ = 0;
    events_.on_ready();
  });
}

bool redis_link::command(const std::vector<std::string>& argv,
                         std::function<void(redisReply*)> done) {
  return ready() && send(argv, std::move(done));
}

bool redis_link::send(const std::vector<std::string>& argv, std::function<void(redisReply*)> done) {
  std::vector<const char*> args;
  std::vector<std::size_t> lengths;
  for (const std::string& a : argv) {
    args.push_back(a.data());
    lengths.push_back(a.size());
  }
  auto p = std::make_unique<pending>(pending{this, std::move(done)});
  if (redisAsyncCommandArgv(context_, on_reply, p.get(), static_cast<int>(args.size()),
                            args.data(), lengths.data()) != REDIS_OK) {
    fail("cannot send a command");
    return false;
  }
  p.release();  // on_reply owns it now: hiredis calls it exactly once, with nullptr at worst
  if (in_flight_++ == 0) arm_deadline();
  return true;
}

void redis_link::on_reply(redisAsyncContext* c, void* reply, void* privdata) {
  std::unique_ptr<pending> p(static_cast<pending*>(privdata));
  redis_link* self = p->link;
  if (c == self->context_ && self->in_flight_ > 0) {
    if (--self->in_flight_ == 0) {
      uv_timer_stop(&self->deadline_);
    } else {
      self->arm_deadline();  // the next reply gets a deadline of its own
    }
  }
  p->done(c == self->context_ ? static_cast<redisReply*>(reply) : nullptr);
}

void redis_link::arm_deadline() {
  uv_timer_start(&deadline_, [](uv_timer_t* h) {
    auto* self = static_cast<redis_link*>(h->data);
    self->fail(self->phase_ == phase::connecting
                   ? "no connection within " + std::to_string(self->deadline_ms_) + " ms"
                   : "no answer within " + std::to_string(self->deadline_ms_) + " ms");
  }, deadline_ms_, 0);
}

void redis_link::fail(const std::string& why) {
  if (phase_ == phase::idle || phase_ == phase::closed) return;
  phase_ = phase::idle;
  failure_ = why;
  uv_timer_stop(&deadline_);
  // Never free a hiredis context from inside one of its callbacks: drop it on the next turn.
  uv_timer_start(&drop_timer_, [](uv_timer_t* h) { static_cast<redis_link*>(h->data)->drop_now(); },
                 0, 0);
}

void redis_link::drop_now() {
  in_flight_ = 0;
  // Cleared first: the reply callbacks hiredis now calls with nullptr, and its disconnect
  // callback, see a context that is no longer ours.
  if (redisAsyncContext* c = std::exchange(context_, nullptr)) redisAsyncFree(c);
  events_.on_lost(failure_);
  schedule_retry();
}

void redis_link::schedule_retry() {
  if (phase_ == phase::closed) return;
  backoff_ms_ = backoff_ms_ == 0 ? first_backoff_ms : std::min(backoff_ms_ * 2, max_backoff_ms);
  uv_timer_start(&retry_timer_, [](uv_timer_t* h) { static_cast<redis_link*>(h->data)->connect(); },
                 backoff_ms_, 0);
}

}  // namespace wslb::cluster
