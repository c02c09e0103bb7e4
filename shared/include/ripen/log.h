// Logging setup shared by every binary: spdlog to stderr, as text or JSON lines.
#pragma once

#include <string>

namespace ripen {

// `level`: trace..off; `format`: text | json. `process` names the binary in JSON lines.
void setup_logging(const std::string& process, const std::string& level, const std::string& format);

}  // namespace ripen
