// Lease recovery: a dispatcher killed between claiming tasks and getting the
// broker's confirms leaves them in its shards' in-flight sets; when their lease
// expires another dispatcher publishes them again. Nothing is lost.
//
// Deterministic, not timing luck: the first dispatcher (the real binary) talks
// to RabbitMQ through a TcpProxy, which swallows its basic.publish frames. It
// claims the tasks and publishes them into the void, so they sit in flight with
// no confirm coming and never reach a queue; only a recovery can run them.
#include <gtest/gtest.h>

#include <csignal>
#include <iostream>
#include <string>
#include <vector>

#include "fleet.h"

namespace ripen::testing {
namespace {

using namespace std::chrono_literals;

constexpr int kTasks = 20;

struct Claimed {
  std::vector<std::string> ids;
  int64_t first_deadline = 0;  // earliest in-flight lease deadline, Redis TIME
  int64_t last_deadline = 0;   // latest
};

class LeaseRecovery : public FleetTest {
 protected:
  void SetUp() override {
    FleetTest::SetUp();
    config_.dispatcher.shard_lease_ms = 2000;
    config_.dispatcher.inflight_lease_ms = 2000;
    redis_ = connect_redis(config_);
  }

  // Enqueues kTasks due now, lets a ripen-dispatcher whose publishes are
  // swallowed claim them all, and SIGKILLs it. The tasks' in-flight leases (set
  // by that dispatcher) last `inflight_lease_ms`.
  Claimed claim_then_kill(int64_t inflight_lease_ms) {
    Claimed out;
    out.ids = enqueue(tasks(kTasks, "job"));

    auto [proxy, first] = proxy_broker();
    proxy.drop_publishes(true);
    first.dispatcher.inflight_lease_ms = inflight_lease_ms;
    // One message per task, so the swallowed publishes can be counted per task.
    first.dispatcher.bundle = 1;
    const std::string file = write_config_file(first, config_.ns + "-first");
    Child dispatcher(binary("dispatcher/ripen-dispatcher"),
                     {"--config", file, "--amqp-url", first.amqp_url, "--id", "doomed"}, child_env(config_));
    const bool claimed = wait_until(
        [&] {
          return inflight_count(*redis_, keys()) == kTasks && due_count(*redis_, keys()) == 0 &&
                 proxy.dropped_publishes() >= kTasks;
        },
        20s, 5ms);
    EXPECT_TRUE(claimed) << "in flight: " << inflight_count(*redis_, keys()) << ", due: " << due_count(*redis_, keys())
                         << ", publishes swallowed: " << proxy.dropped_publishes() << "\n"
                         << dispatcher.output();
    dispatcher.signal(SIGKILL);
    EXPECT_EQ(dispatcher.wait(10s), -SIGKILL);

    // The state under test: claimed and published, never confirmed.
    EXPECT_EQ(inflight_count(*redis_, keys()), kTasks);
    for (const auto& id : out.ids) {
      auto rec = read_task_record(*redis_, keys(), id);
      EXPECT_TRUE(rec && rec->state == "scheduled") << id << " is " << (rec ? rec->state : "missing");
    }
    out.first_deadline = INT64_MAX;
    for (int s = 0; s < config_.shards; ++s) {
      auto r = redis_->command({"ZRANGE", keys().inflight(s), "0", "-1", "WITHSCORES"});
      EXPECT_TRUE(r.ok());
      if (!r) continue;
      for (size_t i = 1; i < r->size(); i += 2) {
        out.first_deadline = std::min(out.first_deadline, r->at(i).integer());
        out.last_deadline = std::max(out.last_deadline, r->at(i).integer());
      }
    }
    return out;
  }

  // Waits until every task has succeeded and nothing is left in flight: up to
  // 15 s after the last in-flight lease expires.
  void expect_all_succeed(const Claimed& claimed, const Dispatcher& dispatcher) {
    auto now = redis_->time_ms();
    ASSERT_TRUE(now.ok());
    const auto timeout = std::chrono::milliseconds(std::max<int64_t>(claimed.last_deadline - *now, 0)) + 15s;
    std::string stuck;
    const bool done = wait_until(
        [&] {
          stuck.clear();
          for (const auto& id : claimed.ids) {
            auto rec = read_task_record(*redis_, keys(), id);
            if (!rec || rec->state != "succeeded") stuck += id + "=" + (rec ? rec->state : "missing") + " ";
          }
          return stuck.empty() && inflight_count(*redis_, keys()) == 0;
        },
        timeout, 50ms);
    auto stats = dispatcher.stats();
    std::cout << "second dispatcher: claimed=" << stats.claimed << " confirmed=" << stats.confirmed
              << " recovered=" << stats.recovered << "; handler runs: " << calls_.size() << "\n";
    EXPECT_TRUE(done) << "not succeeded: " << stuck << "\nstill in flight: " << inflight_count(*redis_, keys())
                      << ", due: " << due_count(*redis_, keys()) << ", " << timeout.count() << " ms after the kill";
    std::string never_ran;
    for (const auto& id : claimed.ids) never_ran += calls_.count(id) == 0 ? id + " " : "";
    EXPECT_TRUE(never_ran.empty()) << "never ran: " << never_ran;
    EXPECT_GE(stats.recovered, static_cast<uint64_t>(kTasks)) << "every claimed task comes back by lease expiry";
  }

  const Keys& keys() {
    if (!keys_) keys_ = std::make_unique<Keys>(config_.ns, config_.shards);
    return *keys_;
  }

  std::unique_ptr<Redis> redis_;
  std::unique_ptr<Keys> keys_;
};

TEST_F(LeaseRecovery, TakeoverAfterTheLeasesExpiredPublishesEveryTaskAgain) {
  const Claimed claimed = claim_then_kill(3000);
  ASSERT_EQ(claimed.ids.size(), static_cast<size_t>(kTasks));
  ASSERT_TRUE(wait_until(
      [&] {
        auto now = redis_->time_ms();
        return now && *now > claimed.last_deadline;
      },
      15s))
      << "the in-flight leases did not expire by Redis TIME";

  start_worker({{"job", recorder()}});
  const Dispatcher& dispatcher = start_dispatcher("survivor");
  expect_all_succeed(claimed, dispatcher);
}

TEST_F(LeaseRecovery, StandbyDispatcherRecoversLeasesThatExpireWhileItHoldsTheShards) {
  // The in-flight leases outlive the dead dispatcher's shard leases, so the
  // standby holds every shard (and has looked at each once) before they expire.
  const Claimed claimed = claim_then_kill(6000);
  ASSERT_EQ(claimed.ids.size(), static_cast<size_t>(kTasks));

  start_worker({{"job", recorder()}});
  const Dispatcher& dispatcher = start_dispatcher("standby");
  ASSERT_TRUE(wait_until([&] { return dispatcher.stats().shards.size() == static_cast<size_t>(config_.shards); }, 15s))
      << "the standby never took over every shard";
  auto now = redis_->time_ms();
  ASSERT_TRUE(now.ok());
  ASSERT_LT(*now, claimed.first_deadline) << "precondition: the standby took the shards before the leases expired";
  std::cout << "standby holds every shard " << claimed.first_deadline - *now
            << " ms before the first in-flight lease expires\n";

  expect_all_succeed(claimed, dispatcher);
}

}  // namespace
}  // namespace ripen::testing
