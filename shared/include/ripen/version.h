// What `--version` prints for ripen, ripen-dispatcher and ripen-worker. Linked
// into the programs only (library ripen_version), so a new commit relinks the
// three programs and nothing else.
#pragma once

#include <string>
#include <string_view>

namespace CLI {
class App;
}

namespace ripen {

// The project's version (project(VERSION) in CMakeLists.txt), e.g. "0.1.0".
std::string_view version();

// The commit the program was built from, read at build time: `git rev-parse
// --short HEAD` of the source tree, with "-dirty" when tracked files differed
// from it; "unknown" when the source was not a git checkout.
std::string_view build_commit();

// "ripen 0.1.0 (commit 3d7d8ed)" for program "ripen".
std::string version_line(std::string_view program);

// Adds --version to `app`: it prints version_line(program) on stdout and the
// parse ends with CLI::CallForVersion (exit code 0; app.exit() prints it).
void add_version_flag(CLI::App& app, std::string_view program);

}  // namespace ripen
