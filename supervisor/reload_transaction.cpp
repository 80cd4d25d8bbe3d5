#include "supervisor/reload_transaction.h"

namespace wslb::supervisor {

const char* to_string(transaction_event e) {
  switch (e) {
    case transaction_event::started: return "started";
    case transaction_event::committed: return "committed";
    case transaction_event::rolled_back: return "rolled back";
  }
  return "?";
}

std::string reload_transaction::prepare(config& next) {
  for (prepared_ = 0; prepared_ < steps_.size(); ++prepared_) {
    std::string why = steps_[prepared_]->prepare(next);
    if (!why.empty()) {
      roll_back();
      return why;
    }
  }
  return {};
}

void reload_transaction::commit(const config& next) {
  for (auto& step : steps_) step->commit(next);
  prepared_ = 0;
}

void reload_transaction::roll_back() {
  while (prepared_ > 0) steps_[--prepared_]->roll_back();
}

}  // namespace wslb::supervisor
