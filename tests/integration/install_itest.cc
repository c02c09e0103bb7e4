// The producer library as another project uses it: `cmake --install` this
// build, configure and build producer/examples/enqueue against the installed
// package (find_package(ripen), ripen::producer), and run it against the real
// Redis: the task it schedules is in the wheel, and a refused one says why.
#include <gtest/gtest.h>

#include <unistd.h>
#include <filesystem>
#include <string>

#include "ripen/task_record.h"
#include "testing.h"

namespace ripen::testing {
namespace {

class Install : public NamespaceTest {
 protected:
  void TearDown() override {
    std::filesystem::remove_all(dir_);
    NamespaceTest::TearDown();
  }
  std::filesystem::path dir_ = std::filesystem::temp_directory_path() / ("ripen-install-" + std::to_string(getpid()));
};

TEST_F(Install, AnotherProjectFindsTheInstalledPackageAndSchedulesATask) {
  const std::string cmake = find_program("cmake");
  ASSERT_FALSE(cmake.empty()) << "cmake not on PATH";
  const std::string prefix = (dir_ / "prefix").string(), build = (dir_ / "example").string();

  auto install = run_command(cmake, {"--install", RIPEN_BUILD_DIR, "--prefix", prefix});
  ASSERT_EQ(install.code, 0) << install.out << install.err;
  EXPECT_TRUE(std::filesystem::exists(prefix + "/lib/cmake/ripen/ripenConfig.cmake"));
  EXPECT_TRUE(std::filesystem::exists(prefix + "/include/ripen/producer.h"));
  EXPECT_TRUE(std::filesystem::exists(prefix + "/bin/ripen"));

  auto configure = run_command(cmake, {"-S", std::string(RIPEN_SOURCE_DIR) + "/producer/examples/enqueue", "-B", build,
                                       "-DCMAKE_PREFIX_PATH=" + prefix});
  ASSERT_EQ(configure.code, 0) << configure.out << configure.err;
  auto compile = run_command(cmake, {"--build", build});
  ASSERT_EQ(compile.code, 0) << compile.out << compile.err;

  auto env = child_env(config_);
  auto enqueued = run_command(build + "/enqueue-example", {"send-sms", R"({"to": "+15550100"})", "30s"}, env);
  ASSERT_EQ(enqueued.code, 0) << enqueued.err;
  const std::string id = trim(enqueued.out);
  auto redis = connect_redis(config_);
  auto record = read_task_record(*redis, Keys(config_.ns, config_.shards), id);
  ASSERT_TRUE(record.ok()) << record.error().describe();
  EXPECT_EQ(record->state, "scheduled");
  EXPECT_EQ(record->type, "send-sms");
  EXPECT_EQ(due_count(*redis, Keys(config_.ns, config_.shards)), 1);

  auto refused = run_command(build + "/enqueue-example", {"send-sms", "{}", "30s", "no spaces allowed"}, env);
  EXPECT_EQ(refused.code, 1);
  EXPECT_NE(refused.err.find("queue"), std::string::npos) << "names the field: " << refused.err;
  EXPECT_EQ(due_count(*redis, Keys(config_.ns, config_.shards)), 1) << "nothing written for the refused one";
}

}  // namespace
}  // namespace ripen::testing
