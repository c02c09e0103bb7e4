// Logging setup shared by every binary: spdlog to stderr, as text or JSON lines.
#pragma once

#include <string>

namespace spdlog {
class logger;
}

namespace ripen {

// `level`: trace..off; `format`: text | json. `process` names the binary in JSON lines.
void setup_logging(const std::string& process, const std::string& level, const std::string& format);

// The line format alone, on any logger (setup_logging uses it on stderr's).
// json: one JSON object per line, {"ts","level","process","pid","msg"}, whatever
// the message holds: quotes, newlines, control characters and invalid UTF-8
// (replaced by U+FFFD) are escaped, so no message can break or forge a line.
void set_log_format(spdlog::logger& logger, const std::string& process, const std::string& format);

// The last words of a process that stops on an error: a critical log line once
// setup_logging has run (so a JSON log stays all JSON), else `text` on stderr.
void log_fatal(const std::string& text);

}  // namespace ripen
