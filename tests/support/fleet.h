// The set-up most integration tests share: a producer, dispatchers and workers
// running in this process on threads, and a log of the handler calls, all in
// the test's own namespace against the real servers.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ripen/config.h"
#include "ripen/dispatcher.h"
#include "ripen/envelope.h"
#include "ripen/producer.h"
#include "ripen/task_record.h"
#include "ripen/worker.h"
#include "testing.h"

namespace ripen::testing {

// A gate that handlers wait at until the test opens it: a task that stays
// `running` for as long as the test needs.
class Gate {
 public:
  void open() { open_.store(true); }
  bool is_open() const { return open_.load(); }
  // Returns once the gate is open, or once the worker cancels the run (its
  // shutdown grace has passed), so a test that fails first does not hang.
  void wait(const TaskContext& ctx) const;
  // Returns once the gate is open, whatever the worker says: for a test in
  // which the run must outlast its worker's stop().
  void wait() const;

 private:
  std::atomic<bool> open_{false};
};

// The most handlers seen inside at once, for tests of what may overlap.
struct Overlap {
  std::atomic<int> inside{0};
  std::atomic<int> most{0};
  void enter();
  void leave() { --inside; }
};

// Handlers by task type, as a worker is given them.
using Handlers = std::map<std::string, Handler>;

// A test in its own namespace (see NamespaceTest) that runs a fleet in
// process: start_dispatcher() and start_worker() each start one on a thread,
// and all of them stop at TearDown, pass or fail, or when the test says so.
//
// What a handler shares with the test body lives in the fixture, never in a
// local of the body: the fleet runs until TearDown, and by then the body's
// locals are gone. calls_ and gate_ (which TearDown opens before it stops the
// fleet) are here for that, a suite's fixture can add members, and keep<T>()
// holds anything else.
class FleetTest : public NamespaceTest {
 protected:
  void TearDown() override;

  // The producer, made from config_ on first use: change config_ before.
  Producer& producer();

  // A dispatcher (or worker) made from config_ as it is now, or from `config`,
  // running until stopped. The reference stays valid until TearDown.
  Dispatcher& start_dispatcher(std::string owner = "");
  Dispatcher& start_dispatcher(const Config& config, std::string owner = "");
  Worker& start_worker(const Handlers& handlers, const std::string& name = "");
  Worker& start_worker(const Config& config, const Handlers& handlers, const std::string& name = "");

  // Stops one (its run() returns: a worker's runs end within its shutdown
  // grace), or every dispatcher and then every worker.
  void stop(Dispatcher& dispatcher);
  void stop(Worker& worker);
  void stop();

  // Runs a dispatcher, and no worker, until `done` holds (or `timeout` passes),
  // then stops it: what it published stays in the queues to be looked at.
  // Returns whether `done` held.
  bool run_dispatcher_until(const std::function<bool(const Dispatcher&)>& done, std::chrono::milliseconds timeout);
  // run_dispatcher_until() the wheel has handed every task to the broker (none
  // due, none in flight): the messages stay in the queues to be looked at.
  bool dispatch_all(std::chrono::milliseconds timeout = std::chrono::seconds(20));

  // Appends the call (id, attempt, payload) to calls_; recorder() is a handler
  // that does only that.
  void record(const TaskContext& ctx);
  Handler recorder();
  // Whether calls_ holds `n` calls within `timeout`.
  bool wait_for_calls(size_t n, std::chrono::milliseconds timeout);

  // Enqueues `tasks` in one batch (with the fixture's producer, or `producer`),
  // expecting each to be accepted; returns the ids of those that were, in order.
  std::vector<std::string> enqueue(std::vector<Envelope> tasks);
  static std::vector<std::string> enqueue(Producer& producer, std::vector<Envelope> tasks);
  // `n` tasks of `type` on `queue`, due now, with payloads {"i": 0} .. {"i": n-1}.
  static std::vector<Envelope> tasks(int n, const std::string& type, const std::string& queue = "default");

  // A TcpProxy in front of config_'s broker (it understands AMQP, see
  // TcpProxy) or Redis, kept past TearDown so that the fleet can go through it
  // until it stops, and config_ with that server's URL going through it.
  struct Proxied {
    TcpProxy& proxy;
    Config config;
  };
  Proxied proxy_broker();
  Proxied proxy_redis();

  // wait_for_state() on the producer's connection.
  std::optional<TaskRecord> wait_for_state(const std::string& id, const std::string& state,
                                           std::chrono::milliseconds timeout);
  // Whether the task is in `state` within `timeout`; when not, the message says
  // the state it is in (see in_state()).
  ::testing::AssertionResult reaches(const std::string& id, const std::string& state,
                                     std::chrono::milliseconds timeout);

  // A T that lives until the fixture does, past TearDown: for state a handler
  // shares with the test body (`auto& runs = keep<std::atomic<int>>(0);`), or
  // a server the fleet talks to, which must outlast the fleet's stop.
  template <class T, class... Args>
  T& keep(Args&&... args) {
    auto held = std::make_shared<T>(std::forward<Args>(args)...);
    T& ref = *held;
    held_.push_back(std::move(held));
    return ref;
  }

  CallLog calls_;
  Gate gate_;

 private:
  // A service and the thread that runs it, once started; the thread stops first.
  template <class Service>
  struct Started {
    template <class... Args>
    explicit Started(Args&&... args) : service(std::forward<Args>(args)...) {}
    Service service;
    std::optional<Running<Service>> running;
  };

  std::unique_ptr<Producer> producer_;
  // Lists: an element never moves, so references to its service stay valid.
  std::list<Started<Dispatcher>> dispatchers_;
  std::list<Started<Worker>> workers_;
  std::vector<std::shared_ptr<void>> held_;
};

}  // namespace ripen::testing
