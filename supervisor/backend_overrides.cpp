#include "supervisor/backend_overrides.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "cli/status_view.h"

namespace wslb::supervisor {

using cli::to_string;

namespace {

constexpr auto relaxed = std::memory_order_relaxed;

std::vector<std::string> split_tabs(const std::string& line) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (;;) {
    const std::size_t tab = line.find('\t', start);
    out.push_back(line.substr(start, tab - start));
    if (tab == std::string::npos) return out;
    start = tab + 1;
  }
}

// Writes `text` to `path` so that a crash leaves the old file or the new one, never half of
// one: a temporary file beside it, fsync, rename over, fsync of the directory.
std::string write_atomically(const std::string& path, const std::string& text) {
  const std::string temporary = path + ".tmp";
  const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return "cannot write " + temporary + ": " + strerror(errno);
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string why = strerror(errno);
      close(fd);
      unlink(temporary.c_str());
      return "cannot write " + temporary + ": " + why;
    }
    done += static_cast<std::size_t>(n);
  }
  if (fsync(fd) != 0 || close(fd) != 0 || rename(temporary.c_str(), path.c_str()) != 0) {
    const std::string why = strerror(errno);
    unlink(temporary.c_str());
    return "cannot replace " + path + ": " + why;
  }
  const std::size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash + 1);
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    fsync(dir_fd);  // the rename itself reaches the disk
    close(dir_fd);
  }
  return {};
}

}  // namespace

std::string config_line(const backend_config& b) {
  return b.where.to_string() + ",weight=" + std::to_string(b.weight);
}

bool parse_admin_state(const std::string& word, shm::admin_state& out) {
  for (auto s : {shm::admin_state::ready, shm::admin_state::drain, shm::admin_state::maint}) {
    if (word == to_string(s)) {
      out = s;
      return true;
    }
  }
  return false;
}

std::string render_state_file(const override_map& overrides,
                              const runtime_backend_map& runtime) {
  std::string out = "# wslb state file: runtime backend changes (wslb backend ...)\n";
  out += render_runtime_backends(runtime);
  for (const auto& [address, o] : overrides) {
    out += "backend\t" + address + "\t" + o.line + "\t" + to_string(o.state) + "\t" +
           std::to_string(o.weight) + "\n";
  }
  return out;
}

std::string render_overrides(const override_map& overrides) {
  return render_state_file(overrides, {});
}

std::string parse_overrides(const std::string& text, override_map& out) {
  runtime_backend_map unused;
  return parse_state_file(text, out, unused);
}

std::string parse_state_file(const std::string& text, override_map& out,
                             runtime_backend_map& runtime_out) {
  override_map parsed;
  runtime_backend_map runtime;
  std::istringstream in(text);
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (line.empty() || line[0] == '#') continue;
    const std::vector<std::string> f = split_tabs(line);
    const auto bad = [&](const std::string& why) {
      return "line " + std::to_string(number) + ": " + why;
    };
    if (f[0] == "added" || f[0] == "removed") {
      if (const std::string why = parse_runtime_backend(f, runtime); !why.empty()) return bad(why);
      continue;
    }
    if (f.size() != 5 || f[0] != "backend") {
      return bad("expected 'backend', address, line, state, weight separated by tabs");
    }
    backend_override o;
    o.line = f[2];
    if (f[1].empty() || o.line.rfind(f[1] + ",", 0) != 0) {
      return bad("the configuration line '" + f[2] + "' is not that of '" + f[1] + "'");
    }
    if (!parse_admin_state(f[3], o.state)) return bad("unknown state '" + f[3] + "'");
    auto [end, ec] = std::from_chars(f[4].data(), f[4].data() + f[4].size(), o.weight);
    if (ec != std::errc() || end != f[4].data() + f[4].size() || o.weight > 1000) {
      return bad("weight '" + f[4] + "' is not 0 to 1000");
    }
    parsed[f[1]] = o;
  }
  out = std::move(parsed);
  runtime_out = std::move(runtime);
  return {};
}

std::vector<std::string> dropped_overrides(const override_map& overrides, const config& cfg) {
  std::vector<std::string> dropped;
  for (const auto& [address, o] : overrides) {
    const backend_config* found = nullptr;
    for (const auto& b : cfg.backends) {
      if (b.where.to_string() == address) found = &b;
    }
    if (found == nullptr) {
      dropped.push_back(address + " (no longer configured)");
    } else if (config_line(*found) != o.line) {
      dropped.push_back(address + " (its line changed: " + o.line + " -> " +
                        config_line(*found) + ")");
    }
  }
  return dropped;
}

std::string override_journal::open(std::string path) {
  path_ = std::move(path);
  overrides_.clear();
  runtime_.clear();
  std::ifstream file(path_);
  if (!file) return {};
  std::stringstream text;
  text << file.rdbuf();
  const std::string why = parse_state_file(text.str(), overrides_, runtime_);
  if (why.empty()) return {};
  const std::string aside = path_ + ".bad";
  rename(path_.c_str(), aside.c_str());
  return "state file " + path_ + " is malformed (" + why + "): ignored, kept as " + aside;
}

std::vector<std::string> override_journal::apply(shm::table& t, const config& cfg) {
  std::vector<std::string> dropped = dropped_overrides(overrides_, cfg);
  for (const std::string& d : dropped) overrides_.erase(d.substr(0, d.find(' ')));
  for (const auto& b : cfg.backends) {
    shm::backend_row& row = t.backends[b.row];
    const auto it = overrides_.find(b.where.to_string());
    const backend_override o = it == overrides_.end() ? backend_override{} : it->second;
    row.weight.store(o.weight != 0 ? o.weight : b.weight, relaxed);
    if (row.admin.exchange(o.state, relaxed) != o.state) {
      row.config_epoch.fetch_add(1, std::memory_order_release);  // the checker looks again
    }
  }
  if (!dropped.empty()) save();
  return dropped;
}

std::string override_journal::set(const std::string& address, backend_override o) {
  if (o.state == shm::admin_state::ready && o.weight == 0) {
    overrides_.erase(address);
  } else {
    overrides_[address] = std::move(o);
  }
  return save();
}

std::string override_journal::clear() {
  overrides_.clear();
  return save();
}

std::string override_journal::set_runtime(const std::string& address,
                                          const runtime_backend* record) {
  if (record == nullptr) {
    runtime_.erase(address);
  } else {
    runtime_[address] = *record;
  }
  return save();
}

std::string override_journal::forget_runtime(const std::vector<std::string>& dropped) {
  if (dropped.empty()) return {};
  for (const std::string& d : dropped) runtime_.erase(d.substr(0, d.find(' ')));
  return save();
}

std::string override_journal::save() const {
  if (path_.empty()) return {};
  return write_atomically(path_, render_state_file(overrides_, runtime_));
}

}  // namespace wslb::supervisor
