// `--version` of the three programs, and the build step behind it
// (cmake/RipenVersion.cmake): the commit follows the checkout at every build,
// and the generated source is rewritten only when its content changes. No
// server is needed; it is an integration test because it runs the built
// programs (and builds only where those are built).
#include <gtest/gtest.h>

#include <unistd.h>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "testing.h"

namespace ripen::testing {
namespace {

namespace fs = std::filesystem;

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// What the build step would call the commit of `dir`, asked of git directly.
std::string expected_commit(const std::string& git, const std::string& dir) {
  if (git.empty()) return "unknown";
  auto top = run_command(git, {"-C", dir, "rev-parse", "--show-toplevel"});
  if (top.code != 0 || fs::canonical(trim(top.out)) != fs::canonical(dir)) return "unknown";
  auto head = run_command(git, {"-C", dir, "rev-parse", "--short", "HEAD"});
  return head.code == 0 ? trim(head.out) : "unknown";
}

TEST(Version, EachProgramPrintsTheProjectVersionAndTheCommitItWasBuiltFrom) {
  const std::string commit = expected_commit(find_program("git"), RIPEN_SOURCE_DIR);
  for (const auto& [name, path] : {std::pair{"ripen", "producer/ripen"},
                                   {"ripen-dispatcher", "dispatcher/ripen-dispatcher"},
                                   {"ripen-worker", "worker/ripen-worker"}}) {
    // build/bin/ holds each program under its own name: the one directory a
    // user puts on PATH.
    for (const std::string& binary_path : {binary(path), binary(std::string("bin/") + name)}) {
      SCOPED_TRACE(binary_path);
      auto r = run_command(binary_path, {"--version"});
      EXPECT_EQ(r.code, 0) << r.err;
      const std::string line = trim(r.out);
      const std::string prefix = std::string(name) + " " + RIPEN_PROJECT_VERSION + " (commit " + commit;
      // The tree may have been edited since the build: "-dirty" either way.
      EXPECT_TRUE(line == prefix + ")" || line == prefix + "-dirty)") << line << "\nexpected " << prefix << ")";
      EXPECT_EQ(r.err, "");
    }
  }
}

class VersionScript : public ::testing::Test {
 protected:
  void SetUp() override {
    git_ = find_program("git");
    cmake_ = find_program("cmake");
    if (git_.empty() || cmake_.empty()) GTEST_SKIP() << "needs git and cmake on PATH";
    fs::create_directories(repo_);
    git({"init", "-q"});
    std::ofstream(repo_ / "file.txt") << "one\n";
    git({"add", "file.txt"});
    commit("first");
  }
  void TearDown() override { fs::remove_all(dir_); }

  void git(const std::vector<std::string>& args) {
    std::vector<std::string> all = {"-C", repo_.string(), "-c", "user.name=t", "-c", "user.email=t@example.com"};
    all.insert(all.end(), args.begin(), args.end());
    auto r = run_command(git_, all);
    ASSERT_EQ(r.code, 0) << "git " << args.at(0) << ": " << r.err;
  }
  void commit(const std::string& message) { git({"commit", "-q", "-am", message}); }
  std::string head() { return expected_commit(git_, repo_.string()); }

  // Runs the build step over `source`; returns what it wrote.
  std::string generate(const fs::path& source) {
    auto r = run_command(cmake_, {"-DOUTPUT=" + output_.string(), "-DVERSION=9.8.7", "-DSOURCE_DIR=" + source.string(),
                                  "-DGIT=" + git_, "-P", std::string(RIPEN_SOURCE_DIR) + "/cmake/RipenVersion.cmake"});
    EXPECT_EQ(r.code, 0) << r.out << r.err;
    return read_text(output_);
  }

  fs::path dir_ = fs::temp_directory_path() / ("ripen-version-" + std::to_string(getpid()));
  fs::path repo_ = dir_ / "repo";
  fs::path output_ = dir_ / "version_info.cc";
  std::string git_, cmake_;
};

TEST_F(VersionScript, FollowsEachNewCommitAndMarksUncommittedChanges) {
  const std::string first = head();
  ASSERT_NE(first, "unknown");
  std::string text = generate(repo_);
  EXPECT_NE(text.find("\"9.8.7\""), std::string::npos) << text;
  EXPECT_NE(text.find("\"" + first + "\""), std::string::npos) << text;

  std::ofstream(repo_ / "file.txt") << "two\n";
  EXPECT_NE(generate(repo_).find("\"" + first + "-dirty\""), std::string::npos) << read_text(output_);

  commit("second");
  const std::string second = head();
  ASSERT_NE(second, first);
  EXPECT_NE(generate(repo_).find("\"" + second + "\""), std::string::npos) << read_text(output_);

  // An untracked file is not a change to the commit's tree.
  std::ofstream(repo_ / "new.txt") << "x\n";
  EXPECT_NE(generate(repo_).find("\"" + second + "\""), std::string::npos) << read_text(output_);
}

TEST_F(VersionScript, RewritesTheSourceOnlyWhenItChanges) {
  generate(repo_);
  // Backdated: a rewrite would show as a new modification time, so nothing
  // that compiles the file would rebuild when the commit is the same.
  const auto old = fs::file_time_type::clock::now() - std::chrono::hours(1);
  fs::last_write_time(output_, old);
  generate(repo_);
  EXPECT_EQ(fs::last_write_time(output_), old) << "rewritten with the same content";

  git({"commit", "-q", "--allow-empty", "-m", "second"});
  generate(repo_);
  EXPECT_NE(fs::last_write_time(output_), old) << "not rewritten after a new commit";
}

TEST_F(VersionScript, SaysUnknownOutsideTheTopOfACheckout) {
  fs::create_directories(dir_ / "plain");
  EXPECT_NE(generate(dir_ / "plain").find("\"unknown\""), std::string::npos) << read_text(output_);
  // A source tree unpacked inside another checkout must not print that one's commit.
  fs::create_directories(repo_ / "unpacked");
  EXPECT_NE(generate(repo_ / "unpacked").find("\"unknown\""), std::string::npos) << read_text(output_);
}

}  // namespace
}  // namespace ripen::testing
