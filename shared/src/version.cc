#include "ripen/version.h"

#include <CLI/CLI.hpp>

namespace ripen {

std::string version_line(std::string_view program) {
  std::string line(program);
  line += ' ';
  line += version();
  line += " (commit ";
  line += build_commit();
  line += ')';
  return line;
}

void add_version_flag(CLI::App& app, std::string_view program) {
  // CLI11's own version flag: parsed before the required options and
  // subcommands are checked, so `ripen --version` needs no subcommand.
  app.set_version_flag("--version", version_line(program), "print the version and the commit built from, and exit");
}

}  // namespace ripen
