// `wslb upgrade`: the master re-executes a binary (the one it was started from, or another)
// in place. The old master forks; the child clears close-on-exec on the listener, the instance
// lock, the control socket, the table, the admin listener (with --admin), the table's state
// export and a report pipe, names them in WSLB_INHERITED_FDS (as nginx's NGINX variable does)
// and execs `BINARY run ARGS...`. The new master adopts them (the table by its descriptor, once
// it is sure it is the instance's; one of another layout is rebuilt from the export), starts
// the next generation in free rows and
// reports on the pipe: "R <text>" once every new worker is ready, or "E <why>" when it cannot
// start. Only then does the old master hand its workers' tunnels over and leave; a binary that
// fails, exits or is not ready within upgrade_ready_timeout_ms is killed and the old master
// serves on (the listener was open in both all along). Until the new master starts children,
// its stderr is a pipe the old master copies to its own stderr: so a binary that exits with
// only a message there (not a wslb, or one that rejects its arguments) is quoted in the
// reply. Master only.
#pragma once

#include <sys/types.h>
#include <uv.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace wslb::supervisor {

inline constexpr const char* inherited_fds_variable = "WSLB_INHERITED_FDS";
inline constexpr std::int64_t upgrade_ready_timeout_ms = 30'000;

// The descriptors an upgrading master hands its successor.
struct inherited_fds {
  int listen = -1;
  int lock = -1;
  int control = -1;
  int table = -1;   // the shared-memory table's segment
  int report = -1;  // write end of the pipe the new master reports on
  // The admin listener, when --admin is on (optional: -1 when not passed).
  int admin = -1;
  // A sealed memfd holding the table's live state in a layout-independent text
  // (shm/table_export.h), for a new master of another layout (optional).
  int state = -1;
  // The predecessor's stderr, while the new master's own is the pipe its predecessor reads
  // (optional: -1 when not passed).
  int log = -1;

  bool operator==(const inherited_fds&) const = default;
};

// "listen=3,lock=4,control=5,table=6,report=7[,log=8][,admin=9][,state=10]" and back. Pure. parse returns nullopt with
// `error` set when a name is unknown, a required one missing or a number is bad.
std::string format_inherited_fds(const inherited_fds& fds);
std::optional<inherited_fds> parse_inherited_fds(std::string_view text, std::string& error);

// New master, at start-up: the descriptors its predecessor named, or nullopt when it was not
// started by an upgrade. Removes the variable (its workers must not see it). Throws
// std::runtime_error when the variable is malformed or names a closed descriptor.
std::optional<inherited_fds> take_inherited_fds();

// Old master: a memfd holding `text`, sealed (no write, grow or shrink: the successor reads
// what was written, whoever else holds it), close-on-exec. -1 with `error` when it cannot.
int sealed_state(const std::string& text, std::string& error);
// New master: the text of the state memfd `fd` its predecessor passed. Throws
// std::runtime_error when it is not a sealed memfd or cannot be read.
std::string read_sealed_state(int fd);

// A worker of the new master's first generation, as the old master learns it ("W row pid
// generation" on the pipe, before "R"): with a table of another layout, the old master shows
// it in its own table, where its workers look for whom to hand over to.
struct successor_worker {
  std::size_t row = 0;
  pid_t pid = 0;
  std::uint32_t generation = 0;
};

// New master: names one of its workers to the old one (before report_upgrade).
void report_successor_worker(int fd, const successor_worker& w);
// New master: tells the old one it serves ("R ...") or cannot start ("E ..."); closes `fd`.
void report_upgrade(int& fd, bool ready, const std::string& text);

// New master, before it forks any child: stderr is the predecessor's again (children must not
// inherit a pipe whose reader exits); closes and clears `fds.log`. Nothing when not passed.
void restore_own_stderr(inherited_fds& fds);

// Old master: the path of the running executable (the default `upgrade` binary).
std::string own_executable();

struct upgrade_watch;

// Old master: one upgrade in flight, from the fork to the new master's report.
class binary_upgrade {
 public:
  using done_fn = std::function<void(bool ok, const std::string& message)>;

  // Forks and execs `binary run run_args...` with `fds` inherited (report is made here) and
  // `environment` ("NAME=value", e.g. systemd's NOTIFY_SOCKET, which this master took out of
  // its own) added. Returns "" once started (`done` is called later, once), else why not
  // (`done` is not).
  std::string start(uv_loop_t* loop, const std::string& binary,
                    const std::vector<std::string>& run_args, inherited_fds fds,
                    const std::vector<std::string>& environment, done_fn done);
  bool in_progress() const { return state_ != nullptr; }
  pid_t new_master() const { return pid_; }
  // The new master's workers it named before its "R" (none from a failed one).
  const std::vector<successor_worker>& successor_workers() const { return workers_; }

 private:
  friend void finish_upgrade(upgrade_watch* w, bool ok, const std::string& message);
  upgrade_watch* state_ = nullptr;
  pid_t pid_ = 0;
  std::vector<successor_worker> workers_;
};

}  // namespace wslb::supervisor
