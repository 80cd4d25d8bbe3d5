#include "checker/response_head.h"

#include <cctype>

namespace wslb::checker {

namespace {
bool same_ignoring_case(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }
}  // namespace

int response_status(std::string_view head) {
  const std::size_t eol = head.find("\r\n");
  if (eol == std::string_view::npos) return 0;
  const std::string_view line = head.substr(0, eol);
  // "HTTP/1.x SP 3DIGIT [SP reason]"; servers that answer HTTP/1.0 are fine for a check.
  if (line.size() < 12 || line.substr(0, 7) != "HTTP/1." || !is_digit(line[7]) ||
      line[8] != ' ' || !is_digit(line[9]) || !is_digit(line[10]) || !is_digit(line[11])) {
    return -1;
  }
  if (line.size() > 12 && line[12] != ' ') return -1;
  return (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
}

std::size_t head_end(std::string_view head) {
  const std::size_t at = head.find("\r\n\r\n");
  return at == std::string_view::npos ? 0 : at + 4;
}

std::optional<std::string_view> header_value(std::string_view head, std::string_view name) {
  std::size_t pos = head.find("\r\n");
  while (pos != std::string_view::npos) {
    pos += 2;
    const std::size_t eol = head.find("\r\n", pos);
    if (eol == std::string_view::npos || eol == pos) break;  // end of the head
    const std::string_view line = head.substr(pos, eol - pos);
    const std::size_t colon = line.find(':');
    if (colon != std::string_view::npos && same_ignoring_case(line.substr(0, colon), name)) {
      return trim(line.substr(colon + 1));
    }
    pos = eol;
  }
  return std::nullopt;
}

}  // namespace wslb::checker
