// The chaos ledger's verdict on hand-made ledgers: each broken promise is
// found, each allowed case is let through, and every edge is tested both ways.
#include <gtest/gtest.h>

#include "ledger.h"

namespace ripen::chaos {
namespace {

constexpr int64_t kDue = 1'000'000;

class Ledger : public ::testing::Test {
 protected:
  Ledger() {
    in_.tasks.push_back({1, "t1", kDue, false});
    in_.final_state["t1"] = "succeeded";
    in_.dedup_effects[1] = 1;
  }

  // A run of task 1 by `worker`, on the sink's clock from `start` to `end`
  // (none: it never ended), started by the ripen clock at `start` too.
  RunRecord& run(const std::string& worker, int64_t start, std::optional<int64_t> end,
                 RunOutcome outcome = RunOutcome::ok) {
    RunRecord r;
    r.token = worker + "#" + std::to_string(in_.runs.size() + 1);
    r.n = 1;
    r.id = "t1";
    r.attempt = static_cast<int>(in_.runs.size()) + 1;
    r.worker = worker;
    r.given_due_ms = kDue;
    r.ripen_now_ms = start;
    r.start_ms = start;
    r.end_ms = end;
    r.outcome = end ? outcome : RunOutcome::open;
    in_.runs.push_back(r);
    return in_.runs.back();
  }
  void kill(const std::string& worker, int64_t at) { in_.kills.push_back({worker, at}); }

  LedgerInput in_;
};

TEST_F(Ledger, OneRunOnTimeHolds) {
  run("w1", kDue + 5, kDue + 100);
  const Verdict v = judge(in_);
  EXPECT_TRUE(v.holds()) << ::testing::PrintToString(v.examples);
  EXPECT_EQ(v.executed, 1);
  EXPECT_EQ(v.runs, 1);
  EXPECT_EQ(v.max_late_ms, 5);
}

TEST_F(Ledger, StartAtItsDueIsOnTimeAndOneMillisecondBeforeIsEarly) {
  run("w1", kDue, kDue + 100);
  EXPECT_EQ(judge(in_).early, 0);
  in_.runs.back().ripen_now_ms = kDue - 1;
  EXPECT_EQ(judge(in_).early, 1);
}

TEST_F(Ledger, RetryStartedWhileItsWheelEntryWaitsIsEarly) {
  // The redelivered first message runs attempt 2 at once, while the retry
  // written by attempt 1 waits in the wheel until kDue + 5000.
  run("w1", kDue, kDue + 10, RunOutcome::failed);
  RunRecord& early = run("w2", kDue + 20, kDue + 30);
  early.wheel_due_ms = kDue + 5000;
  Verdict v = judge(in_);
  EXPECT_EQ(v.early, 1);
  EXPECT_FALSE(v.holds());

  in_.runs.back().wheel_due_ms = kDue + 20;  // ripe: it is there, but not ahead of the start
  EXPECT_EQ(judge(in_).early, 0);
}

TEST_F(Ledger, RunBeforeTheDueRipenGaveItsAttemptIsEarly) {
  run("w1", kDue, kDue + 10, RunOutcome::failed);
  run("w1", kDue + 20, kDue + 30).given_due_ms = kDue + 21;
  EXPECT_EQ(judge(in_).early, 1);
}

TEST_F(Ledger, EarlyCheckFallsBackToTheSinkClockWhenRipenWasUnreadable) {
  RunRecord& r = run("w1", kDue - 1, kDue + 10);
  r.ripen_now_ms.reset();
  const Verdict v = judge(in_);
  EXPECT_EQ(v.unprobed, 1);
  EXPECT_EQ(v.early, 1);
}

TEST_F(Ledger, SecondRunStartingBeforeTheFirstEndsOverlaps) {
  run("w1", kDue, kDue + 100, RunOutcome::failed);
  run("w2", kDue + 99, kDue + 200);
  EXPECT_EQ(judge(in_).overlapping, 1);
  in_.runs.back().start_ms = kDue + 100;
  in_.runs.back().ripen_now_ms = kDue + 100;
  EXPECT_EQ(judge(in_).overlapping, 0) << "one starting as the other ends is not at the same time";
}

TEST_F(Ledger, KilledRunEndsAtTheKillAndARunAfterItDoesNotOverlap) {
  run("w1", kDue, std::nullopt);
  kill("w1", kDue + 500);
  run("w2", kDue + 500, kDue + 600);
  Verdict v = judge(in_);
  EXPECT_EQ(v.overlapping, 0);
  EXPECT_EQ(v.unfinished, 0);
  EXPECT_TRUE(v.holds()) << ::testing::PrintToString(v.examples);

  in_.runs.back().start_ms = kDue + 499;
  EXPECT_EQ(judge(in_).overlapping, 1);
}

TEST_F(Ledger, RunOfALongRunningTaskOverlapsEvenAfterAShortOneBetween) {
  run("w1", kDue, kDue + 1000, RunOutcome::failed);
  run("w2", kDue + 10, kDue + 20, RunOutcome::failed);
  run("w3", kDue + 500, kDue + 600);
  EXPECT_EQ(judge(in_).overlapping, 2);
}

TEST_F(Ledger, OpenRunOfALiveWorkerIsUnfinished) {
  run("w1", kDue, std::nullopt);
  const Verdict v = judge(in_);
  EXPECT_EQ(v.unfinished, 1);
  EXPECT_EQ(v.lost, 1) << "no run succeeded";
  EXPECT_FALSE(v.holds());
}

TEST_F(Ledger, DuplicateAfterAKillPastTheSideEffectIsExplained) {
  run("w1", kDue, kDue + 100);
  kill("w1", kDue + 100);
  run("w2", kDue + 5000, kDue + 5100);
  const Verdict v = judge(in_);
  EXPECT_EQ(v.duplicates, 1);
  EXPECT_EQ(v.unexplained, 0);
  EXPECT_TRUE(v.holds()) << ::testing::PrintToString(v.examples);
}

TEST_F(Ledger, DuplicateWithTheKillBeforeTheSideEffectOrAfterTheRerunIsUnexplained) {
  run("w1", kDue, kDue + 100);
  kill("w1", kDue + 99);
  run("w2", kDue + 5000, kDue + 5100);
  EXPECT_EQ(judge(in_).unexplained, 1) << "killed before its effect: that run did not succeed there";

  in_.kills = {{"w1", kDue + 5001}};
  EXPECT_EQ(judge(in_).unexplained, 1) << "killed after the rerun began";
  in_.kills = {{"w1", kDue + 5000}};
  EXPECT_EQ(judge(in_).unexplained, 0);
}

TEST_F(Ledger, DuplicateWithNoKillIsUnexplained) {
  run("w1", kDue, kDue + 100);
  run("w2", kDue + 5000, kDue + 5100);
  kill("w2", kDue + 6000);
  const Verdict v = judge(in_);
  EXPECT_EQ(v.duplicates, 1);
  EXPECT_EQ(v.unexplained, 1);
  EXPECT_FALSE(v.holds());
}

TEST_F(Ledger, TaskNotSucceededInRipenIsLostEvenIfItRan) {
  run("w1", kDue, kDue + 100);
  in_.final_state["t1"] = "dispatched";
  EXPECT_EQ(judge(in_).lost, 1);
  in_.final_state.erase("t1");
  EXPECT_EQ(judge(in_).lost, 1);
}

TEST_F(Ledger, TaskThatOnlyFailedIsLostThoughRipenSaysSucceeded) {
  run("w1", kDue, kDue + 100, RunOutcome::failed);
  EXPECT_EQ(judge(in_).lost, 1);
}

TEST_F(Ledger, PermanentlyFailingTaskMustEndDeadWithItsDeadLetter) {
  in_.tasks[0].permanent = true;
  in_.dedup_effects.clear();
  run("w1", kDue, kDue + 10, RunOutcome::failed);
  in_.final_state["t1"] = "dead";
  in_.dead_letters.insert("t1");
  Verdict v = judge(in_);
  EXPECT_TRUE(v.holds()) << ::testing::PrintToString(v.examples);
  EXPECT_EQ(v.dead_lettered, 1);
  EXPECT_EQ(v.executed, 1);

  in_.dead_letters.clear();
  v = judge(in_);
  EXPECT_EQ(v.lost, 1) << "dead, but its dead letter vanished";
  EXPECT_EQ(v.dead_lettered, 0);

  in_.dead_letters.insert("t1");
  in_.final_state["t1"] = "failed";
  EXPECT_EQ(judge(in_).lost, 1);

  in_.final_state["t1"] = "dead";
  in_.dedup_effects[1] = 1;
  EXPECT_EQ(judge(in_).dedup_wrong, 1) << "a failing run has no effect";
}

TEST_F(Ledger, DedupingSinkNeedsExactlyOneEffectPerTask) {
  run("w1", kDue, kDue + 100);
  in_.dedup_effects[1] = 2;  // two idempotency keys for one task
  EXPECT_EQ(judge(in_).dedup_wrong, 1);
  in_.dedup_effects.clear();
  EXPECT_EQ(judge(in_).dedup_wrong, 1);
  in_.dedup_effects[1] = 1;
  in_.dedup_effects_unknown = 1;
  EXPECT_EQ(judge(in_).dedup_wrong, 1);
}

TEST_F(Ledger, RunOfATaskNeverEnqueuedIsAStray) {
  run("w1", kDue, kDue + 100);
  run("w1", kDue, kDue + 100).n = 2;
  const Verdict v = judge(in_);
  EXPECT_EQ(v.strays, 1);
  EXPECT_FALSE(v.holds());
}

TEST_F(Ledger, TableRowShowsTheCounts) {
  Row row;
  row.fault = "worker SIGKILL";
  row.faults = 8;
  row.verdict.enqueued = 120;
  row.verdict.executed = 119;
  row.verdict.lost = 1;
  row.verdict.duplicates = 3;
  row.verdict.unexplained = 2;
  row.recovery_s = 12.34;
  const std::string line = table_row(row);
  EXPECT_NE(line.find("worker SIGKILL"), std::string::npos) << line;
  EXPECT_NE(line.find("3(2)"), std::string::npos) << line;
  EXPECT_NE(line.find("12.3s"), std::string::npos) << line;
  EXPECT_EQ(line.size(), table_header().size()) << "columns line up:\n" << table_header() << "\n" << line;
}

}  // namespace
}  // namespace ripen::chaos
