#include "worker/access_log.h"

#include <errno.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string_view>

#include "common/access_log_file.h"
#include "common/log.h"

namespace wslb::worker {

bool access_log::open(uv_loop_t* loop, const std::string& path, const char* who,
                      std::string& error) {
  loop_ = loop;
  path_ = path;
  who_ = who;
  is_stdout_ = path == access_log_stdout;
  fd_ = is_stdout_ ? STDOUT_FILENO : open_access_log_file(path);
  if (fd_ < 0) {
    error = "access log '" + path + "': " + std::strerror(-fd_);
    fd_ = -1;
    return false;
  }
  write_req_.data = this;
  open_req_.data = this;
  uv_timer_init(loop, &timer_);
  timer_.data = this;
  timer_open_ = true;
  uv_timer_start(&timer_, on_timer, flush_ms, flush_ms);
  filling_.reserve(flush_bytes * 2);
  return true;
}

void access_log::append(std::string_view line) {
  if (fd_ < 0) return;
  if (filling_.size() + line.size() + 1 > max_buffered_bytes) {
    ++dropped_;  // the disk (or the reader of standard output) does not keep up
    return;
  }
  filling_.append(line);
  filling_ += '\n';
  if (filling_.size() >= flush_bytes) flush();
}

void access_log::flush() {
  if (writing_ || opening_ || filling_.empty() || fd_ < 0) return;
  in_flight_.swap(filling_);
  filling_.clear();
  in_flight_done_ = 0;
  writing_ = true;
  uv_buf_t b = uv_buf_init(in_flight_.data(), static_cast<unsigned>(in_flight_.size()));
  // Offset -1: the file position, which O_APPEND puts at the end for every write.
  if (uv_fs_write(loop_, &write_req_, fd_, &b, 1, -1, on_written) != 0) {
    writing_ = false;
    filling_.insert(0, in_flight_);  // tried again at the next tick
  }
}

void access_log::on_written(uv_fs_t* req) {
  auto* self = static_cast<access_log*>(req->data);
  const ssize_t result = req->result;
  uv_fs_req_cleanup(req);
  self->writing_ = false;
  if (result == UV_EAGAIN) {
    // A FIFO whose reader is behind: the rest goes first at the next tick.
    self->filling_.insert(0, self->in_flight_, self->in_flight_done_);
  } else if (result < 0) {
    self->write_failed(static_cast<int>(result));
  } else {
    self->in_flight_done_ += static_cast<std::size_t>(result);
    if (result > 0) self->mid_line_ = self->in_flight_[self->in_flight_done_ - 1] != '\n';
    if (self->in_flight_done_ < self->in_flight_.size()) {
      // A short write (a pipe): the remainder, before anything newer.
      self->writing_ = true;
      uv_buf_t b = uv_buf_init(self->in_flight_.data() + self->in_flight_done_,
                               static_cast<unsigned>(self->in_flight_.size() - self->in_flight_done_));
      if (uv_fs_write(self->loop_, &self->write_req_, self->fd_, &b, 1, -1, on_written) == 0) {
        return;
      }
      self->writing_ = false;
      self->filling_.insert(0, self->in_flight_, self->in_flight_done_);
    }
  }
  if (self->reopen_due_) {
    self->start_reopen();
  } else if (self->filling_.size() >= flush_bytes) {
    self->flush();
  }
}

void access_log::write_failed(int error) {
  // A full disk takes what fits, then refuses: the rest of a line it took part of stays first
  // in the buffer, so that line is completed before another starts after its first half. The
  // whole lines behind it are lost.
  std::string_view unwritten = std::string_view(in_flight_).substr(in_flight_done_);
  const std::size_t rest = mid_line_ ? unwritten.find('\n') + 1 : 0;
  filling_.insert(0, unwritten.substr(0, rest));
  unwritten.remove_prefix(rest);
  lost_ += static_cast<std::uint64_t>(std::count(unwritten.begin(), unwritten.end(), '\n'));
  write_error_ = error;
}

void access_log::reopen() {
  if (fd_ < 0 || is_stdout_) return;
  reopen_due_ = true;
  if (!writing_ && !opening_) start_reopen();
}

void access_log::start_reopen() {
  reopen_due_ = false;
  opening_ = true;
  if (uv_fs_open(loop_, &open_req_, path_.c_str(), access_log_open_flags, access_log_mode,
                 on_opened) != 0) {
    opening_ = false;
    log_line(who_, "access log '%s': cannot reopen", path_.c_str());
  }
}

void access_log::on_opened(uv_fs_t* req) {
  auto* self = static_cast<access_log*>(req->data);
  const ssize_t result = req->result;
  uv_fs_req_cleanup(req);
  self->opening_ = false;
  if (result < 0) {
    // The old file stays open: lines keep going somewhere rather than nowhere.
    log_line(self->who_, "access log '%s': cannot reopen: %s (still writing to the old file)",
             self->path_.c_str(), uv_strerror(static_cast<int>(result)));
  } else {
    // Nothing is in flight to the old descriptor (a reopen waits for the write), so it goes.
    close(self->fd_);
    self->fd_ = static_cast<int>(result);
    if (self->mid_line_) {
      // The rest of a line the old file holds the start of would begin the new one: lost.
      self->filling_.erase(0, self->filling_.find('\n') + 1);
      ++self->lost_;
      self->mid_line_ = false;
    }
  }
  if (self->reopen_due_) {
    self->start_reopen();  // asked again meanwhile
    return;
  }
  self->flush();
}

void access_log::on_timer(uv_timer_t* t) {
  auto* self = static_cast<access_log*>(t->data);
  self->flush();
  self->report_losses(false);
}

void access_log::report_losses(bool force) {
  if (dropped_ == 0 && lost_ == 0) return;
  // A full disk fails every write: one line a second says it, not five (the master's log may
  // well be on the same disk).
  const std::uint64_t now = uv_now(loop_);
  if (!force && reported_ms_ != 0 && now - reported_ms_ < 1000) return;
  reported_ms_ = now;
  if (dropped_ > 0) {
    log_line(who_, "access log '%s': %llu lines dropped (the writes do not keep up)",
             path_.c_str(), static_cast<unsigned long long>(dropped_));
    dropped_ = 0;
  }
  if (lost_ > 0) {
    log_line(who_, "access log '%s': write failed: %s (%llu lines lost)", path_.c_str(),
             uv_strerror(write_error_), static_cast<unsigned long long>(lost_));
    lost_ = 0;
  }
}

void access_log::stop_timer() {
  if (!timer_open_) return;
  timer_open_ = false;
  uv_timer_stop(&timer_);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
}

void access_log::finish() {
  if (fd_ < 0) return;
  std::size_t done = 0;
  int tries = 0;
  while (done < filling_.size() && tries < 100) {
    const ssize_t n = write(fd_, filling_.data() + done, filling_.size() - done);
    if (n > 0) {
      done += static_cast<std::size_t>(n);
    } else if (n < 0 && errno != EINTR && errno != EAGAIN) {
      break;
    } else {
      ++tries;
      if (n < 0 && errno == EAGAIN) usleep(10'000);  // a FIFO's reader: give it a moment
    }
  }
  if (done < filling_.size()) {
    const auto unwritten = std::string_view(filling_).substr(done);
    lost_ += static_cast<std::uint64_t>(std::count(unwritten.begin(), unwritten.end(), '\n'));
    write_error_ = uv_translate_sys_error(errno);
  }
  report_losses(true);
  filling_.clear();
  if (!is_stdout_) close(fd_);
  fd_ = -1;
}

}  // namespace wslb::worker
