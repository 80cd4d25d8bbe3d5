// The steps of a reload that change the table (see reload_transaction.h): the backends added or
// removed at run time, the backend rows, the health-check settings, the operator's runtime
// overrides and the certificates. Master only.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "shm/layout.h"
#include "supervisor/backend_overrides.h"
#include "supervisor/backend_rows.h"
#include "supervisor/reload_transaction.h"
#include "supervisor/tls_upkeep.h"

namespace wslb::supervisor {

// The backends the operator added or removed at run time join the configuration read from the
// file (runtime_backends.h), before the rows are given; the records that no longer apply are
// copied to `*report` on prepare (for the reload's answer; may be null) and forgotten on commit.
class runtime_backends_step : public reload_step {
 public:
  runtime_backends_step(override_journal& journal, std::vector<std::string>* report)
      : journal_(journal), report_(report) {}
  std::string prepare(config& next) override {
    dropped_ = merge_runtime_backends(journal_.runtime_backends(), next);
    if (report_ != nullptr) *report_ = dropped_;
    return {};
  }
  void commit(const config&) override { journal_.forget_runtime(dropped_); }
  void roll_back() override {}

 private:
  override_journal& journal_;
  std::vector<std::string>* report_;
  std::vector<std::string> dropped_;
};

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

// Applies the journal to the new configuration once it is committed (after the backend rows
// have taken the configured weights), dropping what no longer matches.
class overrides_step : public reload_step {
 public:
  overrides_step(override_journal& journal, shm::table& t) : journal_(journal), table_(t) {}
  std::string prepare(config&) override { return {}; }
  void commit(const config& next) override { journal_.apply(table_, next); }
  void roll_back() override {}

 private:
  override_journal& journal_;
  shm::table& table_;
};

// A reload's steps, in the order they are prepared: runtime backends, backend rows, check
// settings, overrides, certificates (tls_step, tls_upkeep.h). If a prepare() fails, the reload
// is refused and the earlier steps undone. The master's reload and the unit tests build their
// transaction here, so both run the same steps.
// On prepare, `*runtime_dropped` (if not null) receives the runtime additions and removals
// the new configuration drops.
inline reload_transaction reload_steps(shm::table& t, override_journal& journal,
                                       std::vector<std::string>* runtime_dropped = nullptr) {
  reload_transaction tx;
  tx.add(std::make_unique<runtime_backends_step>(journal, runtime_dropped));
  tx.add(std::make_unique<backend_rows_step>(t));
  tx.add(std::make_unique<check_settings_step>(t));
  tx.add(std::make_unique<overrides_step>(journal, t));
  tx.add(std::make_unique<tls_step>(t));
  return tx;
}

}  // namespace wslb::supervisor
