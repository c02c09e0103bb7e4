// Circuit breakers with real servers: a downstream (a local HTTP server) that
// starts failing opens its breaker, the tasks for it are deferred into the wheel
// without spending attempts, and all complete once it recovers; a breaker one
// worker opens holds the downstream back on another worker too.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fleet.h"
#include "http_server.h"
#include "ripen/http_handler.h"

namespace ripen::testing {
namespace {

using namespace std::chrono_literals;

class Breakers : public FleetTest {
 protected:
  void SetUp() override {
    FleetTest::SetUp();
    config_.retry_backoff = {50, 200};
    config_.worker.concurrency = 2;
    // http tasks may reach the test server (its host gets a breaker of its own).
    config_.http.types["http"] = {server_.url("/")};
    config_.http.allow_networks = {"127.0.0.1/32"};
    server_.set_handler([this](const HttpServer::Request&) {
      HttpServer::Response r;
      r.status = status_.load();
      return r;
    });
  }

  // `n` http tasks for the test server on `queue`, due now, with attempts to spare.
  std::vector<std::string> enqueue_calls(int n, const std::string& queue = "default") {
    std::vector<Envelope> calls;
    for (int i = 0; i < n; ++i) {
      Envelope task = make_task("http", {{"url", server_.url("/hook")}}, queue);
      task.max_attempts = 50;
      calls.push_back(std::move(task));
    }
    return enqueue(std::move(calls));
  }

  std::string downstream() const { return "127.0.0.1:" + std::to_string(server_.port()); }

  // The state this worker last published for the test server's breaker.
  std::string published_state(Redis& redis, const Worker& worker) const {
    auto r = redis.command({"HGET", Keys(config_.ns, config_.shards).breakers(worker.name()), downstream()});
    if (!r || r->is_nil()) return "";
    return nlohmann::json::parse(r->str()).value("state", "");
  }

  HttpServer server_;
  std::atomic<int> status_{500};
};

TEST_F(Breakers, FailingDownstreamOpensTheBreakerTasksAreDeferredAndAllCompleteWhenItRecovers) {
  BreakerPolicy policy;
  policy.window_calls = 4;
  policy.minimum_calls = 4;
  policy.failure_rate = 0.5;
  policy.open_ms = 300;
  policy.max_open_ms = 1000;
  policy.half_open_calls = 1;
  config_.breakers["default"] = policy;
  const auto ids = enqueue_calls(30);
  ASSERT_EQ(ids.size(), 30u);

  Worker& worker = start_worker({{"http", make_http_handler(config_.http)}});
  start_dispatcher();
  auto redis = connect_redis(config_);

  // The breaker opens, the fleet sees it, and tasks are held back, not failed.
  EXPECT_TRUE(wait_until([&] { return published_state(*redis, worker) == "open"; }, 20s))
      << "the opened breaker is published for the fleet";
  ASSERT_TRUE(wait_until([&] { return worker.stats().deferred >= 10; }, 20s)) << worker.stats().deferred;
  EXPECT_EQ(worker.stats().dead, 0u);

  status_ = 200;
  for (const auto& id : ids) {
    auto rec = wait_for_state(id, "succeeded", 60s);
    ASSERT_TRUE(rec.has_value());
    ASSERT_EQ(rec->state, "succeeded") << id << " last error: " << rec->last_error;
  }
  EXPECT_EQ(worker.stats().dead, 0u);
  // Every attempt was one request to the downstream: a deferral spent none.
  int attempts = 0;
  for (const auto& id : ids) attempts += read_task_record(*redis, producer().keys(), id)->attempts;
  EXPECT_EQ(attempts, server_.requests());
  EXPECT_LT(server_.requests(), 30 + 30) << "deferred tasks did not all hit the failing downstream";
}

TEST_F(Breakers, ABreakerOneWorkerOpenedHoldsTheDownstreamBackOnAnother) {
  queues_ = {"a", "b"};
  config_.dispatcher.queues = {"a", "b"};
  BreakerPolicy policy;
  policy.window_calls = 2;
  policy.minimum_calls = 2;
  policy.open_ms = 60'000;  // stays open for the whole test
  policy.max_open_ms = 60'000;
  config_.breakers["default"] = policy;
  start_dispatcher();

  Config on_a = config_, on_b = config_;
  on_a.worker.queues = {"a"};
  on_b.worker.queues = {"b"};
  start_worker(on_a, {{"http", make_http_handler(config_.http)}}, "worker-a");
  Worker& b = start_worker(on_b, {{"http", make_http_handler(config_.http)}}, "worker-b");

  enqueue_calls(3, "a");
  auto redis = connect_redis(config_);
  ASSERT_TRUE(wait_until(
      [&] {
        auto r = redis->command({"EXISTS", producer().keys().breaker_open(downstream())});
        return r && r->integer() == 1;
      },
      20s))
      << "worker a opens the breaker and announces it";
  const int64_t before = server_.requests();

  // Worker b has never called this downstream: it learns that it is open before
  // its first task starts.
  const auto on_b_ids = enqueue_calls(3, "b");
  ASSERT_TRUE(wait_until([&] { return b.stats().deferred >= 3; }, 20s)) << b.stats().deferred;
  EXPECT_EQ(server_.requests(), before) << "worker b sent nothing to the open downstream";
  for (const auto& id : on_b_ids) {
    auto rec = read_task_record(*redis, producer().keys(), id);
    ASSERT_TRUE(rec.ok());
    EXPECT_EQ(rec->state, "scheduled") << "deferred, not failed";
    EXPECT_EQ(rec->attempts, 0);
  }
}

TEST_F(Breakers, PermanentFailuresDoNotOpenTheBreaker) {
  BreakerPolicy policy;
  policy.window_calls = 2;
  policy.minimum_calls = 2;
  config_.breakers["default"] = policy;
  status_ = 404;  // the downstream answers: the requests are wrong, it is not failing
  const auto ids = enqueue_calls(6);
  Worker& worker = start_worker({{"http", make_http_handler(config_.http)}});
  start_dispatcher();
  for (const auto& id : ids) {
    auto rec = wait_for_state(id, "dead", 20s);
    ASSERT_TRUE(rec.has_value());
    EXPECT_EQ(rec->state, "dead");
    EXPECT_NE(rec->last_error.find("404"), std::string::npos) << rec->last_error;
  }
  EXPECT_EQ(worker.stats().deferred, 0u);
  EXPECT_EQ(server_.requests(), 6);
}

}  // namespace
}  // namespace ripen::testing
