#include "fleet.h"

#include <stdexcept>
#include <thread>
#include <utility>

namespace ripen::testing {

using namespace std::chrono_literals;

void Gate::wait(const TaskContext& ctx) const {
  while (!is_open() && (ctx.cancelled == nullptr || !ctx.cancelled->load())) std::this_thread::sleep_for(1ms);
}

void Gate::wait() const {
  while (!is_open()) std::this_thread::sleep_for(1ms);
}

void Overlap::enter() {
  const int now = ++inside;
  int seen = most.load();
  while (now > seen && !most.compare_exchange_weak(seen, now)) {
  }
}

void FleetTest::TearDown() {
  // A test that failed while a handler waited at the gate: let it go, so the
  // workers stop at once rather than at the end of their shutdown grace.
  gate_.open();
  stop();
  // Whatever the test did, with the fleet stopped the shards' live counts say
  // what a walk of every task finds.
  if (!HasFailure()) {
    EXPECT_TRUE(live_counts_match_walk(config_, producer().redis(), producer().keys()));
  }
  dispatchers_.clear();
  workers_.clear();
  producer_.reset();
  NamespaceTest::TearDown();
}

Producer& FleetTest::producer() {
  if (!producer_) producer_ = std::make_unique<Producer>(config_);
  return *producer_;
}

Dispatcher& FleetTest::start_dispatcher(std::string owner) { return start_dispatcher(config_, std::move(owner)); }

Dispatcher& FleetTest::start_dispatcher(const Config& config, std::string owner) {
  auto& started = dispatchers_.emplace_back(config, std::move(owner));
  started.running.emplace(started.service);
  return started.service;
}

Worker& FleetTest::start_worker(const Handlers& handlers, const std::string& name) {
  return start_worker(config_, handlers, name);
}

Worker& FleetTest::start_worker(const Config& config, const Handlers& handlers, const std::string& name) {
  auto& started = workers_.emplace_back(config, name);
  for (const auto& [type, handler] : handlers) started.service.handle(type, handler);
  started.running.emplace(started.service);
  return started.service;
}

namespace {

// Stops the one of `started` that runs `service`.
template <class Service, class List>
void stop_one(List& started, Service& service) {
  for (auto& s : started) {
    if (&s.service == &service && s.running) s.running->stop();
  }
}

}  // namespace

void FleetTest::stop(Dispatcher& dispatcher) { stop_one(dispatchers_, dispatcher); }
void FleetTest::stop(Worker& worker) { stop_one(workers_, worker); }

void FleetTest::stop() {
  for (auto& d : dispatchers_) {
    if (d.running) d.running->stop();
  }
  for (auto& w : workers_) {
    if (w.running) w.running->stop();
  }
}

bool FleetTest::run_dispatcher_until(const std::function<bool(const Dispatcher&)>& done,
                                     std::chrono::milliseconds timeout) {
  Dispatcher dispatcher(config_);
  Running running(dispatcher);
  return wait_until([&] { return done(dispatcher); }, timeout);
}

bool FleetTest::dispatch_all(std::chrono::milliseconds timeout) {
  return run_dispatcher_until(
      [&](const Dispatcher&) {
        return due_count(producer().redis(), producer().keys()) == 0 &&
               inflight_count(producer().redis(), producer().keys()) == 0;
      },
      timeout);
}

void FleetTest::record(const TaskContext& ctx) { calls_.add({ctx.id, ctx.attempt, ctx.task.payload.dump()}); }

Handler FleetTest::recorder() {
  return [this](const TaskContext& ctx) { record(ctx); };
}

bool FleetTest::wait_for_calls(size_t n, std::chrono::milliseconds timeout) {
  return wait_until([&] { return calls_.size() >= n; }, timeout);
}

std::vector<std::string> FleetTest::enqueue(std::vector<Envelope> tasks) {
  return enqueue(producer(), std::move(tasks));
}

std::vector<std::string> FleetTest::enqueue(Producer& producer, std::vector<Envelope> tasks) {
  std::vector<std::string> ids;
  for (auto& r : producer.enqueue_batch(std::move(tasks))) {
    EXPECT_TRUE(r.ok()) << r.error().describe();
    if (r) ids.push_back(r->id.get());
  }
  return ids;
}

std::vector<Envelope> FleetTest::tasks(int n, const std::string& type, const std::string& queue) {
  std::vector<Envelope> out;
  out.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) out.push_back(make_task(type, {{"i", i}}, queue));
  return out;
}

FleetTest::Proxied FleetTest::proxy_broker() {
  auto broker = parse_amqp_url(config_.amqp_url);
  if (!broker) throw std::runtime_error("amqp_url: " + broker.error().message);
  auto& proxy = keep<TcpProxy>(broker->host, broker->port, TcpProxy::Protocol::amqp);
  Config through = config_;
  through.amqp_url = proxy.url_for(*broker);
  return {proxy, std::move(through)};
}

FleetTest::Proxied FleetTest::proxy_redis() {
  auto server = parse_redis_url(config_.redis_url);
  if (!server) throw std::runtime_error("redis_url: " + server.error().message);
  auto& proxy = keep<TcpProxy>(server->host, server->port, TcpProxy::Protocol::raw);
  Config through = config_;
  through.redis_url = proxy.url_for(*server);
  return {proxy, std::move(through)};
}

std::optional<TaskRecord> FleetTest::wait_for_state(const std::string& id, const std::string& state,
                                                    std::chrono::milliseconds timeout) {
  return ripen::testing::wait_for_state(producer().redis(), producer().keys(), id, state, timeout);
}

::testing::AssertionResult FleetTest::reaches(const std::string& id, const std::string& state,
                                              std::chrono::milliseconds timeout) {
  return in_state(wait_for_state(id, state, timeout), state);
}

}  // namespace ripen::testing
