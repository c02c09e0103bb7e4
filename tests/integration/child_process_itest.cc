// How the integration tests start programs (Child, run_command): with
// posix_spawn and an environment built for each child, never by changing the
// test's own; each child starts clean of what the test did with its signals
// and descriptors. It needs no server; it is here because the integration
// tests' support library is.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "testing.h"

namespace ripen::testing {
namespace {

using namespace std::chrono_literals;

TEST(ChildProcess, AChildGetsTheTestsEnvironmentWithItsOwnValuesAndTheTestsStaysAsItWas) {
  const char* path = std::getenv("PATH");
  ASSERT_NE(path, nullptr);
  ASSERT_EQ(std::getenv("RIPEN_CHILD_ONLY"), nullptr);

  auto r = run_command("/usr/bin/env", {}, {{"RIPEN_CHILD_ONLY", "yes"}, {"PATH", "/nowhere"}});
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string out = "\n" + r.out;
  EXPECT_NE(out.find("\nRIPEN_CHILD_ONLY=yes\n"), std::string::npos) << r.out;
  EXPECT_NE(out.find("\nPATH=/nowhere\n"), std::string::npos) << r.out;
  EXPECT_EQ(out.find("\nPATH=" + std::string(path) + "\n"), std::string::npos) << "PATH twice: " << r.out;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry(*e);
    if (entry.rfind("PATH=", 0) == 0) continue;
    EXPECT_NE(out.find("\n" + entry + "\n"), std::string::npos) << "not passed on: " << entry;
  }

  EXPECT_EQ(std::getenv("RIPEN_CHILD_ONLY"), nullptr) << "the test's own environment changed";
  EXPECT_STREQ(std::getenv("PATH"), path);
}

TEST(ChildProcess, AChildHasAProcessGroupOfItsOwnDefaultSignalsAndNoneOfTheTestsDescriptors) {
  // What the test does with its own signals and descriptors: an ignored
  // SIGUSR1, a descriptor open without close-on-exec.
  struct sigaction ignore {};
  struct sigaction before {};
  ignore.sa_handler = SIG_IGN;
  ASSERT_EQ(sigaction(SIGUSR1, &ignore, &before), 0);
  const int null_fd = open("/dev/null", O_RDONLY);
  ASSERT_GE(null_fd, 0);
  ASSERT_EQ(dup2(null_fd, 100), 100);

  Child child("/bin/sh", {"-c", "ls /proc/$$/fd; echo listed; exec sleep 30"});
  EXPECT_EQ(getpgid(child.pid()), child.pid()) << "not a process group of its own";
  ASSERT_TRUE(wait_until([&] { return child.output().find("listed\n") != std::string::npos; }, 10s)) << child.output();
  EXPECT_EQ(("\n" + child.output()).find("\n100\n"), std::string::npos) << "descriptor 100 was inherited";
  child.signal(SIGUSR1);
  EXPECT_EQ(child.wait(10s), -SIGUSR1) << "SIGUSR1 stayed ignored in the child";

  close(100);
  close(null_fd);
  sigaction(SIGUSR1, &before, nullptr);
}

TEST(ChildProcess, AProgramThatCannotStartIsAnErrorNamingIt) {
  try {
    Child child("/nonexistent/ripen-program", {});
    FAIL() << "started pid " << child.pid();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/ripen-program"), std::string::npos) << e.what();
  }
  EXPECT_THROW(run_command("/nonexistent/ripen-program", {}), std::runtime_error);
}

}  // namespace
}  // namespace ripen::testing
