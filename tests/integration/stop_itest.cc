// `scripts/run --stop` stops every ripen program run from the checkout, a
// worker started by hand included: ripen_stop_checkout_programs in
// scripts/lib/common.sh. The test builds a checkout of its own in a temp dir
// (the script and copies of the programs), so it stops nothing of the real
// build's (other tests run those at the same time), and checks that it stops
// exactly the programs under that checkout's build dirs: not the same program
// of another checkout, not one outside a build dir, not an unrelated process.
#include <gtest/gtest.h>

#include <unistd.h>
#include <chrono>
#include <climits>
#include <csignal>
#include <filesystem>
#include <memory>
#include <string>

#include "testing.h"

namespace ripen::testing {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

class StopCheckout : public NamespaceTest {
 protected:
  void TearDown() override {
    fs::remove_all(dir_);
    NamespaceTest::TearDown();
  }

  // Copies `relative` (e.g. "worker/ripen-worker") of the real build into
  // `to` under the temp checkout; returns the copy's path.
  std::string copy_program(const std::string& relative, const std::string& to) {
    const fs::path copy = root_ / to;
    fs::create_directories(copy.parent_path());
    fs::copy_file(binary(relative), copy);
    return copy.string();
  }

  // A worker of `path` on its own queue of the test's namespace, up and
  // consuming (so its SIGTERM handler is in place).
  std::unique_ptr<Child> start_worker(const std::string& path) {
    auto worker = std::make_unique<Child>(path, std::vector<std::string>{"--queue", "default"}, child_env(config_));
    EXPECT_TRUE(wait_until([&] { return worker->output().find("consuming") != std::string::npos; }, 30s))
        << path << ":\n"
        << worker->output();
    return worker;
  }

  fs::path dir_ = fs::temp_directory_path() / ("ripen-stop-" + std::to_string(getpid()));
  fs::path root_ = dir_ / "checkout";
};

TEST_F(StopCheckout, StopsEveryProgramOfTheCheckoutsBuildDirsAndNothingElse) {
  queues_ = {"default"};
  fs::create_directories(root_ / "scripts/lib");
  fs::copy_file(std::string(RIPEN_SOURCE_DIR) + "/scripts/lib/common.sh", root_ / "scripts/lib/common.sh");

  // Started by hand from the checkout: a worker, run as the README says, and
  // a dispatcher from a second build dir.
  auto by_hand = start_worker(copy_program("worker/ripen-worker", "build/worker/ripen-worker"));
  // One whose binary was relinked (here: removed) since it started: the
  // kernel shows its executable as "PATH (deleted)".
  const std::string old_binary = copy_program("worker/ripen-worker", "build-old/worker/ripen-worker");
  auto relinked = start_worker(old_binary);
  fs::remove(old_binary);
  Child dispatcher(copy_program("dispatcher/ripen-dispatcher", "build-asan/dispatcher/ripen-dispatcher"), {},
                   child_env(config_));
  // Left alone: the same program in another checkout (the real build), one
  // outside the checkout's build dirs, and an unrelated process.
  auto other_checkout = start_worker(binary("worker/ripen-worker"));
  auto outside_build = start_worker(copy_program("worker/ripen-worker", "tools/worker/ripen-worker"));
  const std::string sleep = find_program("sleep");
  ASSERT_FALSE(sleep.empty());
  Child unrelated(sleep, {"600"});
  ASSERT_TRUE(dispatcher.running()) << dispatcher.output();

  const std::string bash = find_program("bash");
  ASSERT_FALSE(bash.empty());
  auto stop = run_command(bash, {"-c", "set -euo pipefail; source \"$1\"; ripen_stop_checkout_programs 10", "_",
                                 (root_ / "scripts/lib/common.sh").string()});
  EXPECT_EQ(stop.code, 0) << stop.err;

  // SIGTERM, not SIGKILL: the worker drained and exited on its own.
  EXPECT_EQ(by_hand->wait(5s), 0) << by_hand->output();
  EXPECT_EQ(dispatcher.wait(5s), 0) << dispatcher.output();
  EXPECT_EQ(relinked->wait(5s), 0) << relinked->output();
  // It says what it stopped.
  EXPECT_NE(
      stop.err.find("ripen-worker: stopped (pid " + std::to_string(by_hand->pid()) + ", build/worker/ripen-worker)"),
      std::string::npos)
      << stop.err;
  EXPECT_NE(stop.err.find("ripen-dispatcher: stopped (pid " + std::to_string(dispatcher.pid())), std::string::npos)
      << stop.err;

  EXPECT_TRUE(other_checkout->running()) << other_checkout->output();
  EXPECT_TRUE(outside_build->running()) << outside_build->output();
  EXPECT_TRUE(unrelated.running());
  EXPECT_EQ(stop.err.find(std::to_string(other_checkout->pid())), std::string::npos) << stop.err;

  // Nothing left to stop: it says nothing and succeeds.
  auto again = run_command(bash, {"-c", "set -euo pipefail; source \"$1\"; ripen_stop_checkout_programs 10", "_",
                                  (root_ / "scripts/lib/common.sh").string()});
  EXPECT_EQ(again.code, 0) << again.err;
  EXPECT_EQ(again.err, "");

  for (Child* c : {other_checkout.get(), outside_build.get()}) {
    c->signal(SIGTERM);
    EXPECT_EQ(c->wait(10s), 0) << c->output();
  }
}

}  // namespace
}  // namespace ripen::testing
