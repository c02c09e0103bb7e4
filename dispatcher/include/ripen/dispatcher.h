// ripen::Dispatcher: moves ripe tasks from the Redis timer wheel to RabbitMQ.
//
// Contract:
// - A task is published no earlier than its due time by Redis TIME, and as soon
//   after as the dispatcher can: it sleeps until the earliest due time of its
//   shards (at most max_poll) and is woken early by enqueues of earlier tasks.
// - Delivery is at-least-once. A claimed task leaves the in-flight set only when
//   the broker confirms it; a dispatcher that dies leaves leases that expire, and
//   the task is claimed and published again.
// - Each shard has one active dispatcher at a time (a lease with a fencing token
//   the claim script checks). Dispatchers share the shards among themselves.
// - A message the broker returns as unroutable goes to the dead-letter path with
//   its reason; it is never dropped.
// - Connection failures to either server are logged and retried with backoff;
//   run() returns only after stop().
// - With dispatcher.ingress (the default) it also consumes the AMQP ingress on a
//   thread of its own (ingress.h), and on another it takes part in leading the
//   recurring schedules (scheduler.h).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "ripen/clock.h"
#include "ripen/config.h"
#include "ripen/ingress.h"
#include "ripen/metrics.h"
#include "ripen/scheduler.h"

namespace ripen {

struct DispatcherStats {
  uint64_t claimed = 0;      // tasks taken from the wheel
  uint64_t messages = 0;     // messages published to task queues (a bundle of tasks is one)
  uint64_t confirmed = 0;    // publishes the broker confirmed
  uint64_t returned = 0;     // publishes the broker returned as unroutable (dead-lettered)
  uint64_t released = 0;     // publishes put back in the wheel (nack or broken connection)
  uint64_t recovered = 0;    // in-flight tasks whose lease expired and went back to the wheel
  uint64_t held = 0;         // ripe tasks of a paused queue held in the wheel instead of published
  uint64_t lost = 0;         // tasks whose message was lost (dispatcher.lost_after), put back to be published again
  bool blocked = false;      // the broker blocks our publishing now (a resource alarm): nothing is claimed
  Histogram lateness;        // claim time - max(due time, created), ms, by Redis TIME (lateness_ms)
  std::vector<int> shards;   // shards held now
  IngressStats ingress;      // the AMQP ingress this dispatcher consumes (dispatcher.ingress)
  SchedulerStats schedules;  // the recurring schedules, while this dispatcher leads them
};

// Which shards a dispatcher should hold, given the live dispatchers. Pure, for
// unit tests. Dispatcher `rank` of `live` prefers shards s with s % live == rank and
// holds at most as many shards as that share has; extra shards are given back,
// keeping its own. A preferred shard still held by a peer is waited for; a free
// shard of someone else's share is taken meanwhile and given back later.
struct ShardPlan {
  int target = 0;
  std::vector<int> release;  // held shards to give back
  std::vector<int> acquire;  // free shards to try, preferred first
};
ShardPlan plan_shards(int shards, int live, int rank, const std::set<int>& held);

class Dispatcher {
 public:
  explicit Dispatcher(const Config& config, std::string owner = "", Clock& clock = SystemClock::instance());
  ~Dispatcher();
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  // Runs until stop(). First waits for Redis to answer, taking nothing from
  // the ingress meanwhile; throws RedisUnreachable (redis.h) when it has not
  // within redis_startup_timeout. On stop it stops claiming, waits briefly for
  // outstanding confirms, puts back what stays unconfirmed and gives its
  // shards back.
  void run();
  // Thread-safe and async-signal-safe.
  void stop();

  DispatcherStats stats() const;
  const std::string& owner() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ripen
