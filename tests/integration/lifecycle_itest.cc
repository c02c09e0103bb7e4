// The lifecycle table (lifecycle.h) held against the scripts, on the real
// Redis: a task is put in each state through the scripts themselves, every
// script is asked for each transition from each state the table does not
// allow, and each must refuse, say so, and change nothing. Then the breaks of
// the promise issue 13 found, each as the story that broke it.
#include <gtest/gtest.h>

#include <chrono>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "ripen/lifecycle.h"
#include "ripen/producer.h"
#include "ripen/schedule_store.h"
#include "ripen/scripts.h"
#include "ripen/stored_task.h"
#include "shard_scripts.h"
#include "testing.h"

namespace ripen::testing {
namespace {

using namespace std::chrono_literals;
using scripts::FinishOutcome;
using scripts::FinishResult;
using scripts::SettleOutcome;
using scripts::SettleResult;
using scripts::StartVerdict;

constexpr TaskState kAll[] = {TaskState::absent,     TaskState::scheduled, TaskState::failed,    TaskState::paused,
                              TaskState::dispatched, TaskState::running,   TaskState::succeeded, TaskState::dead,
                              TaskState::discarded,  TaskState::cancelled};

constexpr int64_t kHour = 3'600'000;

class Lifecycle : public ShardScriptsTest {
 protected:
  void SetUp() override {
    ShardScriptsTest::SetUp();
    producer_ = std::make_unique<Producer>(config_);
  }

  // Whatever the scripts did (or refused), the shard's live counts say what
  // a walk of its tasks finds.
  void TearDown() override {
    if (!HasFailure()) {
      EXPECT_TRUE(live_counts_match_walk(config_, *redis_, *keys_));
    }
    ShardScriptsTest::TearDown();
  }

  std::string enqueue(int64_t delay_ms) {
    auto r = producer_->enqueue_in(make_task("send", {{"n", ++made_}}), std::chrono::milliseconds(delay_ms));
    EXPECT_TRUE(r.ok()) << r.error().describe();
    return r ? r->id.get() : "";
  }

  scripts::FinishReply finish(const std::string& id, FinishOutcome outcome, int64_t delay_ms = kHour) {
    return finish_all({{id, 1, outcome, "boom", delay_ms, ""}}, kHour).at(0);
  }

  scripts::SweepReply sweep(int64_t lost_after_ms, const std::vector<std::string>& clear = {"default"}) {
    scripts::SweepCall call(*keys_, lost_after_ms, 60'000, 100);
    call.add(0, lease_, clear);
    return scripts::SweepCall::read(run(call));
  }

  std::string state_of(const std::string& id) {
    auto r = read_task_record(*redis_, *keys_, id);
    return r ? r->state : "absent";
  }

  // A new task in state `s`, brought there by the scripts. Every task left in
  // the wheel is due in an hour, so a claim takes only what a test makes ripe.
  std::string place(TaskState s) {
    switch (s) {
      case TaskState::absent:
        return "never-enqueued-" + std::to_string(++made_);
      case TaskState::scheduled:
        return enqueue(kHour);
      case TaskState::cancelled: {
        const std::string id = enqueue(kHour);
        EXPECT_TRUE(producer_->cancel(TaskId(id)).ok());
        return id;
      }
      case TaskState::paused: {
        EXPECT_TRUE(redis_->command({"HSET", keys_->paused_flags(0), "default", "1"}).ok());
        const std::string id = enqueue(0);
        claim();
        EXPECT_EQ(settle(id, SettleOutcome::hold, "default").result, SettleResult::held);
        EXPECT_TRUE(redis_->command({"HDEL", keys_->paused_flags(0), "default"}).ok());
        return id;
      }
      default:
        break;
    }
    const std::string id = enqueue(0);
    EXPECT_EQ(claim().tasks.size(), 1u);
    EXPECT_EQ(settle(id, SettleOutcome::confirm).result, SettleResult::confirmed);
    if (s == TaskState::dispatched) return id;
    if (s == TaskState::discarded) {
      EXPECT_EQ(finish(id, FinishOutcome::discard).result, FinishResult::discarded);
      return id;
    }
    EXPECT_EQ(start(id).verdict, StartVerdict::run);
    if (s == TaskState::running) return id;
    const FinishOutcome outcome = s == TaskState::failed ? FinishOutcome::retry
                                  : s == TaskState::dead ? FinishOutcome::dead
                                                         : FinishOutcome::ok;
    EXPECT_NE(finish(id, outcome).result, FinishResult::stale);
    return id;
  }

  // What a task is, for "nothing changed": its live entries and its record.
  struct Snapshot {
    std::string status, task, record_state;
    std::string counts;  // the shard's live counts, every field
    bool in_due = false, in_outstanding = false, in_parked = false;
    bool operator==(const Snapshot&) const = default;
  };
  Snapshot snapshot(const std::string& id) {
    Snapshot s;
    auto st = redis_->command({"HGET", keys_->status(0), id});
    auto task = redis_->command({"HGET", keys_->tasks(0), id});
    auto due = redis_->command({"ZSCORE", keys_->due(0), id});
    auto out = redis_->command({"ZSCORE", keys_->outstanding(0), id});
    auto parked = redis_->command({"ZSCORE", keys_->parked(0, "default"), id});
    s.status = st && st->is_string() ? st->str() : "";
    s.task = task && task->is_string() ? task->str() : "";
    s.in_due = due && !due->is_nil();
    s.in_outstanding = out && !out->is_nil();
    s.in_parked = parked && !parked->is_nil();
    s.record_state = state_of(id);
    if (auto c = redis_->command({"HGETALL", keys_->live_counts(0)})) {
      std::map<std::string, std::string> fields;
      for (size_t i = 0; i + 1 < c->size(); i += 2) fields[c->at(i).str()] = c->at(i + 1).str();
      for (const auto& [f, v] : fields) s.counts += f + "=" + v + " ";
    }
    return s;
  }

  // Asks the script that performs `t` to do it to task `id`. Returns whether
  // it refused (its reply says so). Entries a transition needs to find the
  // task by (an expired in-flight lease, a ripe due entry, a parked entry, an
  // overdue outstanding entry) are put there first, as the fault that leads
  // there would leave them; a refusing script may drop them, but nothing else.
  bool refuses(Transition t, const std::string& id) {
    switch (t) {
      case Transition::enqueue: {
        Envelope e = make_task("send", 1);
        e.id = id;
        auto r = producer_->enqueue(e);
        return !r && r.error().code == Errc::conflict;
      }
      case Transition::claim: {
        (void)redis_->command({"ZADD", keys_->due(0), "1", id});
        const auto c = claim();
        (void)redis_->command({"ZREM", keys_->due(0), id});
        for (const auto& task : c.tasks) {
          if (task.id == id) return false;
        }
        return true;
      }
      case Transition::recover: {
        (void)redis_->command({"ZADD", keys_->inflight(0), "1", id});
        const auto c = claim();
        return c.recovered == 0;
      }
      case Transition::confirm:
      case Transition::release:
      case Transition::unroutable:
      case Transition::hold: {
        const SettleOutcome o = t == Transition::confirm      ? SettleOutcome::confirm
                                : t == Transition::release    ? SettleOutcome::release
                                : t == Transition::unroutable ? SettleOutcome::unroutable
                                                              : SettleOutcome::hold;
        (void)redis_->command({"ZADD", keys_->inflight(0), "12345", id});
        (void)redis_->command({"HSET", keys_->paused_flags(0), "default", "1"});
        const auto r = settle(id, o, t == Transition::hold ? "default" : "unroutable: test", 12345);
        (void)redis_->command({"HDEL", keys_->paused_flags(0), "default"});
        return r.result == SettleResult::refused;
      }
      case Transition::resume: {
        // A queue of its own, so that the paused tasks other cases placed stay put.
        (void)redis_->command({"ZADD", keys_->parked(0, "resumed"), "1", id});
        scripts::append_resume(*redis_, *keys_, 0, "resumed");
        auto r = redis_->flush();
        const bool refused = r && r->front() && r->front()->integer() == 0;
        return refused;
      }
      case Transition::start:
      case Transition::takeover: {
        const auto r = start(id, "w2", kHour, 99);
        return r.verdict == StartVerdict::refused || r.verdict == StartVerdict::missing;
      }
      case Transition::succeed:
      case Transition::retry:
      case Transition::die:
      case Transition::defer:
      case Transition::unstart:
      case Transition::discard: {
        const FinishOutcome o = t == Transition::succeed   ? FinishOutcome::ok
                                : t == Transition::retry   ? FinishOutcome::retry
                                : t == Transition::die     ? FinishOutcome::dead
                                : t == Transition::defer   ? FinishOutcome::defer
                                : t == Transition::unstart ? FinishOutcome::unstart
                                                           : FinishOutcome::discard;
        const auto r = finish(id, o);
        return r.result == FinishResult::refused || r.result == FinishResult::missing;
      }
      case Transition::cancel: {
        auto r = producer_->cancel(TaskId(id));
        return !r && (r.error().code == Errc::conflict || r.error().code == Errc::not_found);
      }
      case Transition::reschedule: {
        auto r = producer_->reschedule_in(TaskId(id), 5s);
        return !r && (r.error().code == Errc::conflict || r.error().code == Errc::not_found);
      }
      case Transition::lost: {
        // Silent since 1970; the tasks other cases placed are too recent to count.
        (void)redis_->command({"ZADD", keys_->outstanding(0), "1", id});
        return sweep(600'000).swept == 0;
      }
    }
    return false;
  }

  // The states from which the call that performs `t` does something the table
  // allows: one call can perform several transitions (start.lua starts a
  // dispatched task and takes a running one over).
  static unsigned performed_by_the_same_call(Transition t) {
    if (t == Transition::start || t == Transition::takeover) {
      return rule(Transition::start).from | rule(Transition::takeover).from;
    }
    return rule(t).from;
  }

  std::unique_ptr<Producer> producer_;
  int made_ = 0;
};

TEST_F(Lifecycle, TasksCanBePutInEveryState) {
  for (TaskState s : kAll) {
    const std::string id = place(s);
    EXPECT_EQ(state_of(id), to_string(s)) << "placing " << to_string(s);
  }
}

TEST_F(Lifecycle, EveryScriptRefusesEveryTransitionTheTableDoesNotAllowAndChangesNothing) {
  int asked = 0;
  for (size_t i = 0; i < kTransitions; ++i) {
    const auto t = static_cast<Transition>(i);
    for (TaskState s : kAll) {
      if ((performed_by_the_same_call(t) & bit(s)) != 0) continue;
      const std::string id = place(s);
      const Snapshot before = snapshot(id);
      ASSERT_EQ(before.record_state, to_string(s));
      EXPECT_TRUE(refuses(t, id)) << rule(t).script << " performed " << to_string(t) << " from " << to_string(s);
      EXPECT_EQ(snapshot(id), before) << to_string(t) << " from " << to_string(s) << " changed the task";
      ++asked;
    }
  }
  EXPECT_GT(asked, 100) << "every disallowed pair was asked";
}

// ---- the breaks, as stories ------------------------------------------------------

// Issue 13, break 1a: the dispatcher loses its connection before the confirm
// and releases the task, though the broker had delivered it and a worker runs it.
TEST_F(Lifecycle, AReleaseAfterAWorkerStartedTheTaskLeavesTheRunAlone) {
  const std::string id = enqueue(0);
  claim();
  ASSERT_EQ(start(id).verdict, StartVerdict::run);  // delivered before the confirm came
  const auto r = settle(id, SettleOutcome::release);
  EXPECT_EQ(r.result, SettleResult::refused);
  EXPECT_EQ(r.state, TaskState::running);
  EXPECT_EQ(state_of(id), "running");
  EXPECT_EQ(due_count(*redis_, *keys_), 0) << "not put back: a claim would publish it to a second worker";
  EXPECT_EQ(inflight_count(*redis_, *keys_), 0) << "its publish is settled all the same";
  EXPECT_EQ(finish(id, FinishOutcome::ok).result, FinishResult::succeeded) << "the run's outcome counts";
}

// Break 1b: the in-flight lease passes while the handler runs (its dispatcher
// died between the confirm and writing it).
TEST_F(Lifecycle, AnExpiredInFlightEntryOfARunningTaskIsNotRecovered) {
  const std::string id = enqueue(0);
  ASSERT_EQ(claim(200).tasks.size(), 1u);  // an in-flight lease of 200 ms
  ASSERT_EQ(start(id).verdict, StartVerdict::run);
  // The dispatcher died: no settle comes. Another claim finds the lease passed.
  ASSERT_TRUE(wait_until(
      [&] {
        const auto c = claim();
        return c.recovered > 0 || inflight_count(*redis_, *keys_) == 0;
      },
      5s));
  EXPECT_EQ(state_of(id), "running");
  EXPECT_EQ(due_count(*redis_, *keys_), 0) << "a second worker would have run it at the same time";
  EXPECT_EQ(start(id, "w2", kHour, 2).verdict, StartVerdict::busy) << "its run holds it";
}

// Break 2: a bundle redelivered after its worker died carried a task whose first
// attempt had failed; its retry waits in the wheel, and the old copy ran it at once.
TEST_F(Lifecycle, AnOldCopyOfARetriedTaskDoesNotRunItEarly) {
  const std::string id = enqueue(0);
  claim();
  settle(id, SettleOutcome::confirm);
  ASSERT_EQ(start(id).verdict, StartVerdict::run);
  ASSERT_EQ(finish(id, FinishOutcome::retry, 60'000).result, FinishResult::failed);  // retry in a minute
  // The worker dies before acking; the broker hands the same message to another.
  const auto again = start(id, "w2", kHour, 2);
  EXPECT_EQ(again.verdict, StartVerdict::refused) << "its retry is not due for a minute";
  EXPECT_EQ(again.state, TaskState::failed);
  EXPECT_EQ(state_of(id), "failed");
  EXPECT_EQ(due_count(*redis_, *keys_), 1) << "the wheel still holds the retry, which runs when it is due";
  // The same for a deferral (breaker open) and a task released back to the wheel.
  const std::string deferred = enqueue(0);
  claim();
  settle(deferred, SettleOutcome::confirm);
  ASSERT_EQ(start(deferred).verdict, StartVerdict::run);
  ASSERT_EQ(finish(deferred, FinishOutcome::defer, 60'000).result, FinishResult::deferred);
  EXPECT_EQ(start(deferred, "w2", kHour, 2).verdict, StartVerdict::refused);
}

// Break 7: one start call carried one lease, the longest of its batch, so a
// 1 s task batched with a 1 h one was held for an hour after its worker died.
TEST_F(Lifecycle, EachStartHoldsItsOwnRunLease) {
  const std::string quick = enqueue(0), slow = enqueue(0);
  claim();
  const auto r = start_all({{quick, 1, 300}, {slow, 2, kHour}});
  ASSERT_EQ(r[0].verdict, StartVerdict::run);
  ASSERT_EQ(r[1].verdict, StartVerdict::run);
  // The worker died. The quick task's lease passes on its own time.
  ASSERT_TRUE(wait_until([&] { return start(quick, "w2", 300, 3).verdict == StartVerdict::run; }, 5s))
      << "taken over once its own 300 ms lease passed";
  const auto held = start(slow, "w2", kHour, 4);
  EXPECT_EQ(held.verdict, StartVerdict::busy);
  EXPECT_GT(held.busy_ms, kHour - 60'000);
}

// A started task may wait for a handler thread before it runs; its worker then
// asks its start again under the same run token, which renews its lease, so a
// handler that keeps to its time limit never outlives the lease (found by the
// chaos suite's long form: a run taken over while it ran).
TEST_F(Lifecycle, TheSameRunAskingAgainRenewsItsLease) {
  const std::string id = enqueue(0);
  claim();
  ASSERT_EQ(start(id, "w1", 400, 7).verdict, StartVerdict::run);
  const std::string first = redis_->command({"HGET", keys_->status(0), id})->str();
  const auto before = parse_stored_status(first);  // views into `first`
  ASSERT_TRUE(before.has_value());
  ASSERT_TRUE(wait_until([&] { return *redis_->time_ms() > std::stoll(std::string(before->lease_until)) - 200; }, 5s));
  const auto renewed = start(id, "w1", 400, 7);
  EXPECT_EQ(renewed.verdict, StartVerdict::run);
  EXPECT_EQ(renewed.attempt, 1) << "the same run: no attempt spent";
  const auto other = start(id, "w2", 400, 8);
  EXPECT_EQ(other.verdict, StartVerdict::busy) << "the renewed lease holds it";
  EXPECT_GT(other.busy_ms, 300) << "a whole lease from the renewal, not what was left of the first";
}

// Break 4: a published task whose message the broker lost (a purged queue)
// stayed `dispatched` for ever.
TEST_F(Lifecycle, APublishedTaskNeverHeardOfAgainIsSweptBackToTheWheel) {
  const std::string id = enqueue(0);
  claim();
  settle(id, SettleOutcome::confirm);
  EXPECT_EQ(sweep(1000).swept, 0) << "not yet: it was confirmed a moment ago";
  ASSERT_TRUE(wait_until([&] { return sweep(1000).swept == 1; }, 5s));
  EXPECT_EQ(state_of(id), "scheduled");
  EXPECT_EQ(due_count(*redis_, *keys_), 1) << "published again at once (its due time has passed)";
  EXPECT_EQ(claim().tasks.size(), 1u);
}

TEST_F(Lifecycle, ASweepHoldsTasksOfAQueueWithABacklogAndNamesTheQueue) {
  const std::string id = enqueue(0);
  claim();
  settle(id, SettleOutcome::confirm);
  ASSERT_TRUE(wait_until(
      [&] {
        const auto r = sweep(200, {});
        return r.held == 1 && r.queues == std::vector<std::string>{"default"};
      },
      5s))
      << "its queue's backlog is not known to be clear: its message may be waiting its turn";
  EXPECT_EQ(state_of(id), "dispatched");
}

TEST_F(Lifecycle, ARunNeverHeardOfPastItsLeaseIsSweptButNotBefore) {
  const std::string id = enqueue(0);
  claim();
  settle(id, SettleOutcome::confirm);
  ASSERT_EQ(start(id, "w1", 500).verdict, StartVerdict::run);
  EXPECT_EQ(sweep(1000).swept, 0) << "its lease holds";
  ASSERT_TRUE(wait_until([&] { return sweep(1000).swept == 1; }, 5s));
  EXPECT_EQ(state_of(id), "failed") << "back in the wheel, its attempt spent";
  EXPECT_EQ(finish(id, FinishOutcome::ok).result, FinishResult::refused) << "the lost run reports too late";
}

TEST_F(Lifecycle, ASweepByADispatcherThatLostTheShardDoesNothing) {
  const std::string id = enqueue(0);
  claim();
  settle(id, SettleOutcome::confirm);
  ASSERT_TRUE(redis_->command({"DEL", keys_->lease(0)}).ok());
  auto other = scripts::take_lease(*redis_, keys_->lease(0), keys_->fence(0), "other", 60'000);
  ASSERT_TRUE(other.ok() && other->has_value());
  // Past lost_after: the sweep would take it if it could.
  auto confirmed = redis_->command({"ZSCORE", keys_->outstanding(0), id});
  ASSERT_TRUE(confirmed.ok() && !confirmed->is_nil());
  ASSERT_TRUE(wait_until([&] { return *redis_->time_ms() > confirmed->integer() + 1000; }, 5s));
  EXPECT_TRUE(sweep(1000).fenced);
  EXPECT_EQ(state_of(id), "dispatched");
}

// Break 5: the schedules' leader never checked its fencing token.
TEST_F(Lifecycle, AStaleScheduleLeaderCanNeitherMoveTheCursorBackNorWriteOverItsSuccessor) {
  ScheduleStore store(*redis_, *keys_);
  auto a = scripts::take_lease(*redis_, keys_->schedule_leader(), keys_->schedule_fence(), "a", 60'000);
  ASSERT_TRUE(a.ok() && a->has_value());
  ASSERT_EQ(*store.save_state_fenced("tick", **a, "", "v1|1000|"), scripts::ScheduleSaveVerdict::saved);
  // a stalls; its lease passes and b leads, moving the cursor on.
  ASSERT_TRUE(redis_->command({"DEL", keys_->schedule_leader()}).ok());
  auto b = scripts::take_lease(*redis_, keys_->schedule_leader(), keys_->schedule_fence(), "b", 60'000);
  ASSERT_TRUE(b.ok() && b->has_value());
  ASSERT_NE(**a, **b) << "a new lease, a new token";
  ASSERT_EQ(*store.save_state_fenced("tick", **b, "v1|1000|", "v1|5000|"), scripts::ScheduleSaveVerdict::saved);
  // a wakes up and writes what it planned from its old read.
  EXPECT_EQ(*store.save_state_fenced("tick", **a, "v1|1000|", "v1|2000|"), scripts::ScheduleSaveVerdict::fenced);
  // b, had it read an old state, would not write over a newer one either.
  EXPECT_EQ(*store.save_state_fenced("tick", **b, "v1|1000|", "v1|2000|"), scripts::ScheduleSaveVerdict::moved);
  auto stored = redis_->command({"HGET", keys_->schedule_state(), "tick"});
  EXPECT_EQ(stored->str(), "v1|5000|");
}

// Packed records carry a format version; a record written before versions
// existed (v1) still reads, and moves on in the current format.
TEST_F(Lifecycle, RecordsOfTheOldFormatAreReadAndUpgradedAsTheyMove) {
  const std::string id = enqueue(0);
  claim();
  settle(id, SettleOutcome::confirm);
  // As a v1 ripen wrote them: no markers, no lease_until.
  auto task = redis_->command({"HGET", keys_->tasks(0), id});
  const std::string v1_task = task->str().substr(3);
  const std::string status = redis_->command({"HGET", keys_->status(0), id})->str();
  auto st = parse_stored_status(status);
  ASSERT_TRUE(st.has_value());
  const std::string v1_status = std::string("dispatched") + kSep + "0" + kSep + std::string(st->due) + kSep +
                                std::string(st->dispatched) + kSep + kSep + kSep + kSep;
  ASSERT_TRUE(redis_->command({"HSET", keys_->tasks(0), id, v1_task}).ok());
  ASSERT_TRUE(redis_->command({"HSET", keys_->status(0), id, v1_status}).ok());
  EXPECT_EQ(state_of(id), "dispatched");
  ASSERT_EQ(start(id).verdict, StartVerdict::run);
  auto after = redis_->command({"HGET", keys_->status(0), id});
  EXPECT_EQ(after->str().substr(0, 3), std::string("v2") + kSep) << "rewritten in the current format";
  EXPECT_EQ(finish(id, FinishOutcome::ok).result, FinishResult::succeeded);
  auto rec = read_task_record(*redis_, *keys_, id);
  ASSERT_TRUE(rec.ok()) << rec.error().describe();
  EXPECT_EQ(rec->state, "succeeded");
  EXPECT_EQ(rec->queue, "default") << "the v1 TASK head in the ended record reads too";
}

}  // namespace
}  // namespace ripen::testing
