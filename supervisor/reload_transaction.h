// A reload (and a restart) as a transaction. Each change to shared state a new configuration
// brings is a reload_step: prepare() does it aside, where the serving generation does not see
// it; commit() makes it the truth once every new worker is ready; roll_back() undoes prepare()
// entirely. The steps are listed in reload_steps.h; a failing one (certificates that do not
// load, say) refuses the reload like any other. Master only.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/config.h"

namespace wslb::supervisor {

class reload_step {
 public:
  virtual ~reload_step() = default;
  // Prepares this step's part of `next` (and may complete `next`, as the backend rows do).
  // Returns "" or why the reload cannot happen, having changed nothing then.
  virtual std::string prepare(config& next) = 0;
  // The new generation runs `next`: make this step's change visible.
  virtual void commit(const config& next) = 0;
  // Undoes prepare().
  virtual void roll_back() = 0;
};

// What the master reports as a transaction moves on: to the log and, through an observer, to
// whoever else wants to know (a service manager's status, for one).
enum class transaction_event { started, committed, rolled_back };
const char* to_string(transaction_event e);

class reload_transaction {
 public:
  void add(std::unique_ptr<reload_step> step) { steps_.push_back(std::move(step)); }
  // Prepares every step in order. On the first failure, rolls back those already prepared
  // (last first) and returns why; "" when all are prepared.
  std::string prepare(config& next);
  void commit(const config& next);
  // Rolls back every prepared step, last first.
  void roll_back();

 private:
  std::vector<std::unique_ptr<reload_step>> steps_;
  std::size_t prepared_ = 0;
};

}  // namespace wslb::supervisor
