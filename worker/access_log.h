// The worker's access log writer: finished lines (access_record.h) are appended to a memory
// buffer, and the buffer is written by libuv's thread pool (uv_fs_write) every flush_ms or
// once it holds flush_bytes, so the relay never waits on the disk. One write in flight at a
// time; lines that come meanwhile wait in the buffer, which is bounded (max_buffered_bytes:
// beyond it lines are dropped). A write that fails (disk full, an I/O error) loses its lines
// and the worker serves on; dropped and lost lines are counted and reported at most once a
// second in the worker's log, not once per write.
// Every write holds whole lines, and the file is opened with O_APPEND, so the lines of all
// workers never interleave. Worker only, on the loop thread.
#pragma once

#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace wslb::worker {

class access_log {
 public:
  static constexpr std::uint64_t flush_ms = 200;
  static constexpr std::size_t flush_bytes = 64 * 1024;
  static constexpr std::size_t max_buffered_bytes = 4 * 1024 * 1024;

  access_log() = default;
  access_log(const access_log&) = delete;
  access_log& operator=(const access_log&) = delete;

  // Opens `path` ("-": standard output) and starts the flush timer on `loop`. False, with
  // `error` set, when the file cannot be opened. `who` names the worker in log lines.
  bool open(uv_loop_t* loop, const std::string& path, const char* who, std::string& error);
  bool enabled() const { return fd_ >= 0; }

  // Appends one line (the caller's text, without its newline; one is added).
  void append(std::string_view line);

  // Log rotation (SIGUSR1, through the master): what is buffered goes to the file open now,
  // then the path is opened again (a renamed file's successor) and later lines go there.
  // Nothing is lost: a line is in the old file or in the new one.
  void reopen();

  // At worker exit, once the loop has ended (no write in flight): writes what is left
  // synchronously and closes the file.
  void finish();

  // Closes the flush timer (the worker's loop is ending).
  void stop_timer();

 private:
  static void on_timer(uv_timer_t* t);
  static void on_written(uv_fs_t* req);
  static void on_opened(uv_fs_t* req);
  void flush();
  void start_reopen();
  // A write that failed with `error` after in_flight_done_ bytes.
  void write_failed(int error);
  // Logs the lines dropped and lost since the last report, at most once a second (`force`:
  // now, at exit).
  void report_losses(bool force);

  uv_loop_t* loop_ = nullptr;
  std::string path_;
  const char* who_ = "";
  int fd_ = -1;
  bool is_stdout_ = false;
  uv_timer_t timer_{};
  bool timer_open_ = false;
  uv_fs_t write_req_{};
  uv_fs_t open_req_{};
  bool writing_ = false;         // write_req_ is in flight
  bool opening_ = false;         // open_req_ is in flight
  bool reopen_due_ = false;      // reopen once what was buffered before it is written
  std::string filling_;          // lines not yet handed to a write
  std::string in_flight_;        // the bytes of the write in flight
  std::size_t in_flight_done_ = 0;
  std::uint64_t dropped_ = 0;    // lines dropped since the last report
  std::uint64_t lost_ = 0;       // lines lost to failed writes since the last report
  int write_error_ = 0;          // the last failed write's error (a libuv code)
  bool mid_line_ = false;        // the file ends inside a line: its rest is first in filling_
  std::uint64_t reported_ms_ = 0;  // loop time of the last report
};

}  // namespace wslb::worker
