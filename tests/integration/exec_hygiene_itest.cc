// What an exec task's command gets from its worker, with real servers: no
// descriptor but its own three (the worker's Redis and broker sockets stay
// home), no environment but the allow-list and the task's variables (the
// worker's credentials stay home), nothing it started survives the run, its
// rlimits and user apply, a wait that fails is not a success, and an error
// text of any length is stored cut short without costing the worker its
// broker connection.
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

#include "fleet.h"

namespace ripen::testing {
namespace {

using namespace std::chrono_literals;

class ExecHygiene : public FleetTest {
 protected:
  void SetUp() override {
    FleetTest::SetUp();
    dir_ = std::filesystem::temp_directory_path() / ("ripen-exec-" + config_.ns);
    std::filesystem::create_directories(dir_);
    // Writable by the user a command may run as (see AUserAndRlimitsApply).
    std::filesystem::permissions(dir_, std::filesystem::perms::all);
  }
  void TearDown() override {
    FleetTest::TearDown();
    std::filesystem::remove_all(dir_);
  }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  std::string read(const std::string& name) const {
    std::ifstream in(path(name));
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  // Runs one task of `type` through a worker serving config_'s exec commands
  // (started on first use) and waits for `state`; returns its record.
  TaskRecord run_task(const std::string& type, const std::string& state, int max_attempts = 1) {
    if (!started_) {
      start_worker(builtin_handlers(config_));
      start_dispatcher();
      started_ = true;
    }
    Envelope task = make_task(type, {{"n", 1}});
    task.max_attempts = max_attempts;
    const std::string id = producer().enqueue(task)->id.get();
    auto rec = wait_for_state(id, state, 30s);
    if (!rec) throw std::runtime_error("task " + id + " of type " + type + " did not end " + state);
    return *rec;
  }

  std::filesystem::path dir_;
  bool started_ = false;
};

// Whether `pid` is a live process (a zombie is dead: it only waits to be reaped).
bool alive(pid_t pid) {
  if (kill(pid, 0) != 0) return false;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  const size_t close = line.rfind(") ");
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] != 'Z';
}

TEST_F(ExecHygiene, TheCommandSeesNoDescriptorAboveStderr) {
  // A descriptor of the test's open without close-on-exec, beside the worker's
  // own Redis socket (hiredis sets no close-on-exec).
  const int null_fd = open("/dev/null", O_RDONLY);
  ASSERT_GE(null_fd, 0);
  ASSERT_EQ(dup2(null_fd, 100), 100);
  // ls lists its own descriptors once the shell has become it: 0-2 and the
  // directory it reads, which takes the lowest free number (3 when nothing
  // was inherited). Not the shell's: dash keeps redirection copies at 10+.
  config_.worker.exec["fds"] = "exec ls /proc/self/fd > " + path("fds");
  run_task("fds", "succeeded");
  close(100);
  close(null_fd);
  EXPECT_EQ(read("fds"), "0\n1\n2\n3\n");
}

TEST_F(ExecHygiene, TheCommandsEnvironmentIsTheAllowListAndTheTasksVariables) {
  ASSERT_NE(std::getenv("RIPEN_REDIS_URL"), nullptr) << "the test command exports the servers' URLs";
  ASSERT_NE(std::getenv("PATH"), nullptr);
  config_.worker.exec["env"] = "env > " + path("env");
  const TaskRecord rec = run_task("env", "succeeded");
  const std::string env = "\n" + read("env");
  EXPECT_EQ(env.find("\nRIPEN_REDIS_URL="), std::string::npos) << env;
  EXPECT_EQ(env.find("\nRIPEN_AMQP_URL="), std::string::npos) << env;
  EXPECT_NE(env.find("\nPATH=" + std::string(std::getenv("PATH")) + "\n"), std::string::npos) << env;
  EXPECT_NE(env.find("\nRIPEN_TASK_ID=" + rec.id + "\n"), std::string::npos) << env;
  EXPECT_NE(env.find("\nRIPEN_TASK_TYPE=env\n"), std::string::npos) << env;
}

TEST_F(ExecHygiene, NothingTheCommandStartedOutlivesTheRun) {
  // One background child with its own output, one holding the command's
  // stdout and stderr: neither keeps the run going, neither survives it.
  config_.worker.exec["detached"] = "sleep 300 >/dev/null 2>&1 </dev/null & echo $! > " + path("detached.pid");
  config_.worker.exec["holding"] = "sleep 300 & echo $! > " + path("holding.pid");
  config_.worker.exec_timeout_ms = 60'000;
  const auto began = std::chrono::steady_clock::now();
  run_task("detached", "succeeded");
  run_task("holding", "succeeded");
  EXPECT_LT(std::chrono::steady_clock::now() - began, 20s) << "a child holding the pipes made the run wait";
  for (const char* file : {"detached.pid", "holding.pid"}) {
    const pid_t pid = std::stoi(read(file));
    EXPECT_TRUE(wait_until([&] { return !alive(pid); }, 10s)) << file << ": pid " << pid << " survived the run";
  }
}

TEST_F(ExecHygiene, AUserAndRlimitsApply) {
  config_.worker.exec["limited"] = "ulimit -n > " + path("nofile") + "; ulimit -t >> " + path("nofile");
  config_.worker.exec_limits["limited"].open_files = 64;
  config_.worker.exec_limits["limited"].cpu_seconds = 30;
  const passwd* nobody = getpwnam("nobody");
  const bool as_nobody = geteuid() == 0 && nobody != nullptr;
  if (as_nobody) {
    config_.worker.exec["other-user"] = "id -u > " + path("uid");
    config_.worker.exec_limits["other-user"].user = "nobody";
  }
  run_task("limited", "succeeded");
  EXPECT_EQ(read("nofile"), "64\n30\n");
  if (!as_nobody) GTEST_SKIP() << "switching users needs root and a 'nobody' user";
  run_task("other-user", "succeeded");
  EXPECT_EQ(read("uid"), std::to_string(nobody->pw_uid) + "\n");
}

TEST_F(ExecHygiene, AnUnknownUserIsAConfigErrorAtStart) {
  config_.worker.exec["x"] = "true";
  config_.worker.exec_limits["x"].user = "no-such-user-ripen";
  try {
    builtin_handlers(config_);
    FAIL() << "no ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("worker.exec_limits.x: user 'no-such-user-ripen': no such user"),
              std::string::npos)
        << e.what();
  }
}

TEST_F(ExecHygiene, AWaitThatFailsIsAFailureNotASuccess) {
  // With SIGCHLD ignored the kernel reaps children itself, and waiting for
  // one fails (ECHILD): how the command ended is unknown.
  struct sigaction ignore {};
  struct sigaction before {};
  ignore.sa_handler = SIG_IGN;
  ASSERT_EQ(sigaction(SIGCHLD, &ignore, &before), 0);
  config_.worker.exec["lost"] = "exit 3";
  TaskRecord rec;
  try {
    rec = run_task("lost", "dead");
  } catch (...) {
    sigaction(SIGCHLD, &before, nullptr);
    throw;
  }
  sigaction(SIGCHLD, &before, nullptr);
  EXPECT_NE(rec.last_error.find("exec: cannot wait for the command"), std::string::npos) << rec.last_error;
}

TEST_F(ExecHygiene, A200KbStderrIsStoredCutShortAndTheWorkerRunsOn) {
  config_.worker.exec["loud"] = "head -c 200000 /dev/zero | tr '\\0' e >&2; echo the-end >&2; exit 1";
  config_.worker.exec["quiet"] = "true";
  const TaskRecord loud = run_task("loud", "dead");
  EXPECT_LE(loud.last_error.size(), 1024u + 3) << "cut to 1 KiB and an ellipsis";
  EXPECT_NE(loud.last_error.find("exited with status 1"), std::string::npos) << loud.last_error.substr(0, 200);
  EXPECT_NE(loud.last_error.find("the-end"), std::string::npos) << "the tail of stderr is what is kept";
  run_task("quiet", "succeeded");
}

TEST_F(ExecHygiene, AHandlersHugeErrorFitsItsDeadLetterAndTheWorkerRunsOn) {
  // Any handler's: a 200 KB message would make an x-ripen-error header past
  // the broker's frame, the publish of the dead letter fail and the
  // connection drop, again on every redelivery.
  start_worker({{"huge", [](const TaskContext&) { throw Permanent(std::string(200'000, 'x'), std::string(500, 'c')); }},
                {"fine", recorder()}});
  started_ = true;
  start_dispatcher();
  const TaskRecord dead = run_task("huge", "dead");
  EXPECT_LE(dead.last_error.size(), 1024u + 3);
  auto amqp = connect_amqp(config_);
  ASSERT_TRUE(wait_until([&] { return message_count(*amqp, producer().keys().dead_queue("default")) == 1; }, 10s));
  auto m = get_message(*amqp, producer().keys().dead_queue("default"));
  ASSERT_TRUE(m.has_value());
  EXPECT_LE(m->headers["x-ripen-error"].size(), 1024u + 3);
  EXPECT_LE(m->headers["x-ripen-error-code"].size(), 128u + 3);
  run_task("fine", "succeeded");
}

}  // namespace
}  // namespace ripen::testing
