// The storage contract, script by script, against the real Redis: what the
// enqueue, claim, settle, start and finish scripts write, and what `ripen
// status` reads back from it, including orderings that are races in the running
// system (a worker finishing before the dispatcher records the broker's confirm).
#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <deque>
#include <string>
#include <vector>

#include "ripen/producer.h"
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

class Store : public ShardScriptsTest {
 protected:
  std::string enqueue_due_now(nlohmann::json payload = {{"n", 1}}) {
    Producer producer(config_);
    auto r = producer.enqueue(make_task("send", std::move(payload)));
    EXPECT_TRUE(r.ok()) << r.error().describe();
    return r ? r->id.get() : "";
  }

  scripts::FinishResult finish(const std::string& id, scripts::FinishOutcome outcome, const std::string& error = "",
                               int64_t retry_delay_ms = 5000) {
    return finish_all({{id, 1, outcome, error, retry_delay_ms, ""}}).at(0).result;
  }

  TaskRecord record(const std::string& id) {
    auto r = read_task_record(*redis_, *keys_, id);
    EXPECT_TRUE(r.ok()) << r.error().describe();
    return r ? *r : TaskRecord{};
  }
};

TEST_F(Store, ScheduledTaskIsOneTaskFieldAndOneDueEntryAndNoStatus) {
  const std::string id = enqueue_due_now();
  auto tasks = redis_->command({"HLEN", keys_->tasks(0)});
  auto status = redis_->command({"HLEN", keys_->status(0)});
  ASSERT_TRUE(tasks.ok() && status.ok());
  EXPECT_EQ(tasks->integer(), 1);
  EXPECT_EQ(status->integer(), 0) << "no STATUS until the first claim";
  EXPECT_EQ(due_count(*redis_, *keys_), 1);
  const TaskRecord t = record(id);
  EXPECT_EQ(t.state, "scheduled");
  EXPECT_EQ(t.queue, "default");
  EXPECT_EQ(t.type, "send");
  EXPECT_EQ(t.max_attempts, config_.default_max_attempts);
  EXPECT_TRUE(t.created_ms.has_value());
  EXPECT_GE(t.due_ms, *t.created_ms);
}

TEST_F(Store, ClaimReturnsTheStoredTaskAndTheEnvelopeBuiltFromItDecodes) {
  const nlohmann::json payload = {{"to", "+15550100"}, {"text", "tab\there, quote \" and \u001f unit sep"}};
  const std::string id = enqueue_due_now(payload);
  const auto c = claim();
  ASSERT_EQ(c.tasks.size(), 1u);
  EXPECT_EQ(c.tasks[0].id, id);
  EXPECT_EQ(c.lease_deadline, c.now_ms + 30000);
  auto stored = parse_stored_task(c.tasks[0].task);
  ASSERT_TRUE(stored.has_value()) << c.tasks[0].task;
  auto env = decode_envelope(envelope_json(id, *stored));
  ASSERT_TRUE(env.ok()) << env.error().describe() << "\n" << envelope_json(id, *stored);
  EXPECT_EQ(env->id, id);
  EXPECT_EQ(env->queue, "default");
  EXPECT_EQ(env->type, "send");
  EXPECT_EQ(env->payload, payload);
  EXPECT_EQ(record(id).state, "scheduled") << "claimed, not yet confirmed: still the wheel's";
  EXPECT_EQ(inflight_count(*redis_, *keys_), 1);
}

TEST_F(Store, LifeOfATaskThatSucceeds) {
  const std::string id = enqueue_due_now();
  claim();
  settle(id, SettleOutcome::confirm);
  TaskRecord t = record(id);
  EXPECT_EQ(t.state, "dispatched");
  ASSERT_TRUE(t.dispatched_ms.has_value());
  EXPECT_EQ(inflight_count(*redis_, *keys_), 0);

  const scripts::StartReply s = start(id);
  EXPECT_EQ(s.verdict, StartVerdict::run);
  EXPECT_EQ(s.attempt, 1) << "attempt";
  EXPECT_EQ(record(id).state, "running");
  EXPECT_EQ(finish(id, FinishOutcome::ok), FinishResult::succeeded);

  t = record(id);
  EXPECT_EQ(t.state, "succeeded");
  EXPECT_EQ(t.attempts, 1);
  EXPECT_EQ(t.worker, "w1");
  EXPECT_EQ(t.queue, "default") << "the ended record keeps what status prints";
  EXPECT_TRUE(t.started_ms && t.finished_ms && t.dispatched_ms);
  auto hlen = redis_->command({"HLEN", keys_->tasks(0)});
  EXPECT_EQ(hlen->integer(), 0) << "the live entries are gone";
  auto buckets = redis_->command({"ZRANGE", keys_->ended_index(0), "0", "-1", "WITHSCORES"});
  ASSERT_TRUE(buckets.ok());
  ASSERT_EQ(buckets->size(), 2u) << "one bucket of ended records";
  const int64_t goes_at = buckets->at(1).integer();
  // The retention is 60 s here, so a bucket spans 60/16 = 3.75 s: the record goes
  // between 60 and 63.75 s after it was written.
  EXPECT_GE(goes_at, *t.finished_ms + 60'000);
  EXPECT_LE(goes_at, *t.finished_ms + 60'000 + 3'750);
  auto ttl = redis_->command({"PTTL", buckets->at(0).str()});
  EXPECT_GT(ttl->integer(), 60'000) << "Redis expires the bucket itself later, should no writer delete it";
  const scripts::StartReply again = start(id, "w1", 60'000, 2);
  EXPECT_EQ(again.verdict, StartVerdict::refused) << "a redelivery of an ended task is not run";
  EXPECT_EQ(again.state, TaskState::succeeded);
}

TEST_F(Store, BucketOfEndedRecordsPastTheRetentionIsDeletedByTheNextWriter) {
  const std::string first = enqueue_due_now();
  claim();
  start(first);
  // The shortest retention: 1 s, in buckets of 1 s.
  auto retire = [&](const std::string& id) {
    return finish_all({{id, 1, FinishOutcome::ok, "", 0, ""}}, 1000).at(0).result;
  };
  ASSERT_EQ(retire(first), FinishResult::succeeded);
  auto bucket_of_first = redis_->command({"ZRANGE", keys_->ended_index(0), "0", "0"});
  ASSERT_TRUE(bucket_of_first.ok() && bucket_of_first->size() == 1u);
  const std::string old_bucket = bucket_of_first->at(0).str();
  EXPECT_EQ(record(first).state, "succeeded");

  // Once its time has passed (Redis TIME), the next task to end deletes it.
  auto score = redis_->command({"ZSCORE", keys_->ended_index(0), old_bucket});
  ASSERT_TRUE(wait_until([&] { return *redis_->time_ms() > score->integer(); }, 10s));
  const std::string second = enqueue_due_now();
  claim();
  start(second);
  ASSERT_EQ(retire(second), FinishResult::succeeded);
  auto exists = redis_->command({"EXISTS", old_bucket});
  EXPECT_EQ(exists->integer(), 0) << "the old bucket was unlinked";
  auto index = redis_->command({"ZRANGE", keys_->ended_index(0), "0", "-1"});
  ASSERT_EQ(index->size(), 1u);
  EXPECT_NE(index->at(0).str(), old_bucket);
  EXPECT_FALSE(read_task_record(*redis_, *keys_, first).ok()) << "its record went with it";
  EXPECT_EQ(record(second).state, "succeeded");
}

TEST_F(Store, ConfirmWrittenAfterTheWorkerFinishedOnlyClearsTheInFlightEntry) {
  const std::string id = enqueue_due_now();
  claim();
  start(id);  // the worker got the message before the dispatcher wrote the confirm
  ASSERT_EQ(finish(id, FinishOutcome::ok), FinishResult::succeeded);
  const TaskRecord before = record(id);
  EXPECT_TRUE(before.dispatched_ms.has_value()) << "stamped by the claim that published it";
  EXPECT_EQ(settle(id, SettleOutcome::confirm).result, SettleResult::refused) << "it ended: nothing to confirm";
  const TaskRecord t = record(id);
  EXPECT_EQ(t.state, "succeeded");
  EXPECT_EQ(t.dispatched_ms, before.dispatched_ms);
  EXPECT_EQ(inflight_count(*redis_, *keys_), 0);
}

TEST_F(Store, ConfirmOfAnEarlierPublishDoesNotSettleALaterClaimOfTheSameTask) {
  const std::string id = enqueue_due_now();
  claim();
  const int64_t first = deadline_;
  start(id);  // delivered before its confirm was written, failed, retried at once
  ASSERT_EQ(finish(id, FinishOutcome::retry, "boom", 0), FinishResult::failed);
  ASSERT_TRUE(wait_until(
      [&] {
        auto r = redis_->command({"ZSCORE", keys_->due(0), id});
        auto now = redis_->command({"TIME"});
        return r.ok() && now.ok() && r->integer() < now->at(0).integer() * 1000 + now->at(1).integer() / 1000;
      },
      10s));
  ASSERT_EQ(claim().tasks.size(), 1u) << "the retry, claimed again";
  ASSERT_NE(deadline_, first) << "two claims a round trip apart have different lease deadlines";
  EXPECT_EQ(settle(id, SettleOutcome::confirm, "", first).result, SettleResult::stale)
      << "the first publish's confirm, written late, matches no claim";
  EXPECT_EQ(inflight_count(*redis_, *keys_), 1) << "the retry's claim is still in flight";
  EXPECT_EQ(settle(id, SettleOutcome::release).result, SettleResult::released)
      << "its publish failed: back to the wheel, not lost";
  EXPECT_EQ(due_count(*redis_, *keys_), 1);
  EXPECT_EQ(record(id).state, "failed");
}

TEST_F(Store, RetryGoesBackToTheWheelWithItsErrorAndANewDueTime) {
  const std::string id = enqueue_due_now();
  claim();
  settle(id, SettleOutcome::confirm);
  start(id);
  ASSERT_EQ(finish(id, FinishOutcome::retry, "smtp 451"), FinishResult::failed);
  const TaskRecord t = record(id);
  EXPECT_EQ(t.state, "failed");
  EXPECT_EQ(t.last_error, "smtp 451");
  EXPECT_EQ(due_count(*redis_, *keys_), 1);
  auto score = redis_->command({"ZSCORE", keys_->due(0), id});
  EXPECT_EQ(score->integer(), t.due_ms) << "STATUS and the wheel agree on the new due time";
  EXPECT_GE(t.due_ms, *t.finished_ms + 5000);
}

TEST_F(Store, UnroutableTaskEndsDeadWithTheReason) {
  const std::string id = enqueue_due_now();
  claim();
  EXPECT_EQ(settle(id, SettleOutcome::unroutable, "unroutable: no queue").result, SettleResult::dead);
  const TaskRecord t = record(id);
  EXPECT_EQ(t.state, "dead");
  EXPECT_EQ(t.last_error, "unroutable: no queue");
  EXPECT_EQ(due_count(*redis_, *keys_) + inflight_count(*redis_, *keys_), 0);
}

TEST_F(Store, ReleasedTaskGoesBackWithItsOriginalDueTime) {
  const std::string id = enqueue_due_now();
  const int64_t due = record(id).due_ms;
  claim();
  EXPECT_EQ(settle(id, SettleOutcome::release).result, SettleResult::released);
  auto score = redis_->command({"ZSCORE", keys_->due(0), id});
  EXPECT_EQ(score->integer(), due);
  EXPECT_EQ(inflight_count(*redis_, *keys_), 0);
}

TEST_F(Store, SameKeyWhilePendingGivesTheExistingIdAndItsDueTime) {
  Producer producer(config_);
  Envelope a = make_task("send", 1);
  a.idempotency_key = "k|with|pipes";
  a.delay_ms = 60'000;
  auto first = producer.enqueue(a);
  ASSERT_TRUE(first.ok()) << first.error().describe();
  claim();  // nothing ripe; a claimed one would be found through its STATUS
  auto second = producer.enqueue(a);
  ASSERT_TRUE(second.ok());
  EXPECT_FALSE(second->created);
  EXPECT_EQ(second->id, first->id);
  EXPECT_EQ(second->due_ms, first->due_ms);
  EXPECT_EQ(record(first->id.get()).idempotency_key, "k|with|pipes");
}

// The scripts take whole batches with one command per step; what one call
// writes must still read as if its tasks came one after another.
TEST_F(Store, OneBatchNamingTheSameKeyTwiceStoresOneTask) {
  Producer producer(config_);
  Envelope a = make_task("send", 1);
  a.idempotency_key = "once";
  auto r = producer.enqueue_batch({a, a});
  ASSERT_TRUE(r[0].ok() && r[1].ok());
  EXPECT_TRUE(r[0]->created);
  EXPECT_FALSE(r[1]->created);
  EXPECT_EQ(r[1]->id, r[0]->id);
  EXPECT_EQ(r[1]->due_ms, r[0]->due_ms);
  auto tasks = redis_->command({"HLEN", keys_->tasks(0)});
  EXPECT_EQ(tasks->integer(), 1);
  EXPECT_EQ(due_count(*redis_, *keys_), 1);
}

TEST_F(Store, OneBatchNamingTheSameIdTwiceStoresItOnceAndRefusesTheOther) {
  Producer producer(config_);
  Envelope a = make_task("send", 1);
  a.id = "same-id-twice";
  Envelope b = a;
  b.payload = 2;
  auto r = producer.enqueue_batch({a, b});
  ASSERT_TRUE(r[0].ok()) << r[0].error().describe();
  ASSERT_FALSE(r[1].ok());
  EXPECT_EQ(r[1].error().code, Errc::conflict);
  auto stored = redis_->command({"HGET", keys_->tasks(0), "same-id-twice"});
  ASSERT_TRUE(stored.ok() && stored->is_string());
  const std::string packed = stored->str();
  EXPECT_EQ(parse_stored_task(packed)->payload, "1") << "the first one written, not overwritten";
  EXPECT_EQ(due_count(*redis_, *keys_), 1);
}

TEST_F(Store, TaskStartedTwiceInOneCallRunsOnceAndTheSecondIsBusy) {
  const std::string id = enqueue_due_now();
  claim();
  auto r = start_all({{id, 1, 60'000}, {id, 2, 60'000}});
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].verdict, StartVerdict::run);
  EXPECT_EQ(r[0].attempt, 1);
  EXPECT_EQ(r[1].verdict, StartVerdict::busy);
  EXPECT_GT(r[1].busy_ms, 59'000) << "ms left of the first run's lease";
  EXPECT_LE(r[1].busy_ms, 60'000);
  EXPECT_EQ(record(id).attempts, 1);
}

TEST_F(Store, TheSameStartAskedAgainAfterALostReplyRunsWithTheSameAttempt) {
  const std::string id = enqueue_due_now();
  claim();
  auto first = start(id, "w1", 60'000, 7);
  ASSERT_EQ(first.verdict, StartVerdict::run);
  EXPECT_EQ(first.attempt, 1);
  // Redis went away before the reply reached w1, which asks again for the same delivery.
  auto again = start(id, "w1", 60'000, 7);
  EXPECT_EQ(again.verdict, StartVerdict::run) << "its own run, not another worker's";
  EXPECT_EQ(again.attempt, 1) << "the attempt is not counted twice";
  EXPECT_EQ(record(id).attempts, 1);
  EXPECT_EQ(record(id).worker, "w1") << "the run token is not part of the worker's name";
  // Another delivery of it, on the same worker, is a second run: busy.
  EXPECT_EQ(start(id, "w1", 60'000, 8).verdict, StartVerdict::busy);
}

TEST_F(Store, RedeliveryWhileARunHoldsItsLeaseIsBusyAndRunsOnceTheLeasePassed) {
  const std::string id = enqueue_due_now();
  claim();
  ASSERT_EQ(start(id, "w1", 200).verdict, StartVerdict::run);
  auto busy = start(id, "w2", 200);
  EXPECT_EQ(busy.verdict, StartVerdict::busy) << "w1's run (maybe w1 itself, reconnected) still holds it";
  // w1 died: nothing ends its run, and once the lease has passed w2 runs it.
  ASSERT_TRUE(wait_until([&] { return start(id, "w2", 200).verdict == StartVerdict::run; }, 5s));
  EXPECT_EQ(record(id).attempts, 2);
  EXPECT_EQ(record(id).worker, "w2");
  // w1 was only slow: its outcome comes after w2 took the task over, and is not written.
  EXPECT_EQ(finish_all({{id, 1, FinishOutcome::retry, "late", 5000, ""}}, 60000, "w1").at(0).result,
            FinishResult::stale);
  EXPECT_EQ(record(id).state, "running") << "w2's run is the one that counts";
  EXPECT_EQ(due_count(*redis_, *keys_), 0) << "not put back in the wheel under w2's run";
  EXPECT_EQ(finish_all({{id, 1, FinishOutcome::ok, "", 0, ""}}, 60000, "w2").at(0).result, FinishResult::succeeded);
}

TEST_F(Store, UnstartedTaskGivesItsAttemptBackAndCanStartAtOnce) {
  const std::string id = enqueue_due_now();
  claim();
  settle(id, SettleOutcome::confirm);  // the broker confirmed it
  ASSERT_EQ(start(id).verdict, StartVerdict::run);
  EXPECT_EQ(finish(id, FinishOutcome::unstart), FinishResult::unstarted);
  EXPECT_EQ(record(id).state, "dispatched");
  EXPECT_EQ(record(id).attempts, 0);
  EXPECT_EQ(due_count(*redis_, *keys_), 0) << "its delivery goes back to the queue, not to the wheel";
  auto again = start(id, "w2");
  EXPECT_EQ(again.verdict, StartVerdict::run) << "not busy: the handed-back run never happened";
  EXPECT_EQ(again.attempt, 1);
}

TEST_F(Store, DeferredTaskGivesItsAttemptBackAndWaitsInTheWheel) {
  const std::string id = enqueue_due_now();
  claim();
  ASSERT_EQ(start(id).verdict, StartVerdict::run);
  EXPECT_EQ(finish(id, FinishOutcome::defer), FinishResult::deferred);
  const TaskRecord rec = record(id);
  EXPECT_EQ(rec.state, "scheduled");
  EXPECT_EQ(rec.attempts, 0);
  EXPECT_EQ(due_count(*redis_, *keys_), 1);
}

TEST_F(Store, AnOutcomeWrittenAgainAfterALostReplyIsRefusedAndChangesNothing) {
  const std::string id = enqueue_due_now();
  claim();
  ASSERT_EQ(start(id).verdict, StartVerdict::run);
  ASSERT_EQ(finish(id, FinishOutcome::defer, "", 5000), FinishResult::deferred);
  const TaskRecord once = record(id);
  // Redis went away before the reply came; the worker asks again.
  const auto twice_reply = finish_all({{id, 1, FinishOutcome::defer, "", 9000, ""}}).at(0);
  EXPECT_EQ(twice_reply.result, FinishResult::refused);
  EXPECT_EQ(twice_reply.state, TaskState::scheduled) << "it waits in the wheel: not running, so no outcome";
  const TaskRecord twice = record(id);
  EXPECT_EQ(twice.attempts, 0) << "the attempt is given back once, not twice";
  EXPECT_EQ(twice.due_ms, once.due_ms);
  EXPECT_EQ(twice.state, once.state);
}

TEST_F(Store, TaskFinishedTwiceInOneCallEndsOnceAndTheSecondFindsItGone) {
  const std::string id = enqueue_due_now();
  claim();
  start(id);
  auto r = finish_all({{id, 1, FinishOutcome::ok, "", 0, ""}, {id, 1, FinishOutcome::ok, "", 0, ""}});
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].result, FinishResult::succeeded);
  EXPECT_EQ(r[1].result, FinishResult::missing);
  EXPECT_EQ(record(id).state, "succeeded");
}

}  // namespace
}  // namespace ripen::testing
