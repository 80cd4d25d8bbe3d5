// The steps of a reload that change the table (see reload_transaction.h): the backend rows and
// the health-check settings. Master only.
#pragma once

#include "shm/layout.h"
#include "supervisor/backend_rows.h"
#include "supervisor/reload_transaction.h"

namespace wslb::supervisor {

// Gives every backend of the new configuration its row: new ones staged aside on prepare,
// all of them the table's truth on commit, staged ones freed on roll-back.
class backend_rows_step : public reload_step {
 public:
  explicit backend_rows_step(shm::table& t) : table_(t) {}
  std::string prepare(config& next) override { return change_.prepare(table_, next); }
  void commit(const config& next) override { change_.commit(table_, next); }
  void roll_back() override { change_.roll_back(table_); }

 private:
  shm::table& table_;
  backend_rows_change change_;
};

// The checker reads its settings from the table: they change when the reload commits.
class check_settings_step : public reload_step {
 public:
  explicit check_settings_step(shm::table& t) : table_(t) {}
  std::string prepare(config&) override { return {}; }
  void commit(const config& next) override { apply_check_settings(table_, next.check); }
  void roll_back() override {}

 private:
  shm::table& table_;
};

}  // namespace wslb::supervisor
