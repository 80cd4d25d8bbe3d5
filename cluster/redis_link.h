// The agent's one connection to Redis: hiredis's asynchronous API on the agent's libuv loop
// (hiredis's own libuv adapter), with what hiredis 0.14 lacks: a deadline on connecting and on
// every reply (a partitioned node would otherwise wait for TCP's retransmissions, minutes), and
// reconnection with a growing backoff. (The deadline also catches a refused connect: libuv
// reports it to the poll handle as an error status, which hiredis 0.14's adapter ignores.) Authentication and the database are part of connecting:
// the link is `ready` only once AUTH, SELECT and a PING have been answered.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/config.h"

struct redisAsyncContext;
struct redisReply;

namespace wslb::cluster {

class redis_link {
 public:
  struct events {
    std::function<void()> on_ready;                  // connected, authenticated, selected
    std::function<void(const std::string&)> on_lost;  // a connect failed or a link broke
  };

  // `deadline_ms` bounds a connect and each reply. Nothing happens before start().
  redis_link(uv_loop_t* loop, redis_target target, std::uint32_t deadline_ms, events ev);
  redis_link(const redis_link&) = delete;
  redis_link& operator=(const redis_link&) = delete;
  ~redis_link();

  void start();
  // Drops the connection and the timers; the loop then finishes closing their handles.
  void close();

  bool ready() const { return phase_ == phase::ready; }

  // Sends one command when ready; `done` later gets its reply, or nullptr when the link broke
  // first. Returns false without calling `done` when not ready.
  bool command(const std::vector<std::string>& argv, std::function<void(redisReply*)> done);

 private:
  enum class phase { idle, connecting, handshake, ready, closed };
  struct pending;

  void connect();
  void send_handshake();
  void fail(const std::string& why);
  void drop_now();
  void schedule_retry();
  void arm_deadline();
  bool send(const std::vector<std::string>& argv, std::function<void(redisReply*)> done);
  static void on_connect(const redisAsyncContext* c, int status);
  static void on_disconnect(const redisAsyncContext* c, int status);
  static void on_reply(redisAsyncContext* c, void* reply, void* privdata);

  uv_loop_t* loop_;
  redis_target target_;
  std::uint32_t deadline_ms_;
  events events_;
  redisAsyncContext* context_ = nullptr;
  phase phase_ = phase::idle;
  std::size_t in_flight_ = 0;
  std::uint32_t backoff_ms_ = 0;
  std::string failure_;       // why the link is being dropped (set by fail())
  uv_timer_t retry_timer_{};  // next connect attempt
  uv_timer_t deadline_{};     // a connect or reply overdue
  uv_timer_t drop_timer_{};   // drops outside hiredis's callbacks, where freeing is safe
};

}  // namespace wslb::cluster
