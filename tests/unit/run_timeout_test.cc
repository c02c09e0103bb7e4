// A run's time limit: a task's own timeout_ms is clamped to its type's
// max_timeout, else worker.max_task_timeout; what the operator configured is
// taken as it is.
#include <gtest/gtest.h>

#include "ripen/worker.h"

namespace ripen {
namespace {

TEST(RunTimeout, ATasksOwnTimeoutIsClampedToItsTypesMaximumAtTheEdge) {
  Config c;
  c.types["sms"].max_timeout_ms = 10'000;
  EXPECT_EQ(run_timeout_ms(c, "sms", 9'999), 9'999);
  EXPECT_EQ(run_timeout_ms(c, "sms", 10'000), 10'000);
  EXPECT_EQ(run_timeout_ms(c, "sms", 10'001), 10'000) << "clamped, not refused";
  EXPECT_EQ(run_timeout_ms(c, "sms", 7LL * 24 * 3600 * 1000), 10'000);
}

TEST(RunTimeout, WithoutATypeMaximumTheFleetsHolds) {
  Config c;
  c.worker.max_task_timeout_ms = 60'000;
  c.types["sms"].timeout_ms = 5'000;  // a type without max_timeout
  EXPECT_EQ(run_timeout_ms(c, "sms", 60'000), 60'000);
  EXPECT_EQ(run_timeout_ms(c, "sms", 60'001), 60'000);
  EXPECT_EQ(run_timeout_ms(c, "other", 3'600'000), 60'000);
  EXPECT_EQ(Config{}.worker.max_task_timeout_ms, 3'600'000) << "an hour by default";
}

TEST(RunTimeout, WithoutItsOwnATaskGetsItsTypesThenExecTimeoutUnclamped) {
  Config c;
  c.worker.exec_timeout_ms = 90'000;
  c.worker.max_task_timeout_ms = 60'000;
  c.types["sms"].timeout_ms = 120'000;
  EXPECT_EQ(run_timeout_ms(c, "sms", 0), 120'000) << "configured: taken as it is";
  EXPECT_EQ(run_timeout_ms(c, "other", 0), 90'000);
}

}  // namespace
}  // namespace ripen
