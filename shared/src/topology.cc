#include "ripen/topology.h"

#include <map>
#include <mutex>
#include <string>

#include <spdlog/spdlog.h>

namespace ripen {

Status declare_exchanges(Amqp& amqp, const Keys& keys) {
  if (auto st = amqp.declare_exchange(keys.task_exchange(), "direct"); !st) return st;
  if (auto st = amqp.declare_exchange(keys.dead_exchange(), "direct"); !st) return st;
  const std::string unroutable = keys.dead_queue(Keys::kUnroutable);
  if (auto st = amqp.declare_queue(unroutable); !st) return st;
  return amqp.bind_queue(unroutable, keys.dead_exchange(), std::string(Keys::kUnroutable));
}

namespace {

// Whether each task queue this process has declared is a priority queue. A
// queue's arguments cannot change while it exists, and a declare with other
// arguments than it has is refused by closing the channel, so the first
// declare of a queue asks on a connection of its own.
class PriorityQueues {
 public:
  // True: declare with x-max-priority; false: without (an older ripen's queue).
  Result<bool> has_priorities(const Amqp& amqp, const std::string& queue, const AmqpTable& with_priorities) {
    {
      std::lock_guard lock(mu_);
      if (auto it = known_.find(queue); it != known_.end()) return it->second;
    }
    Amqp probe(amqp.url());
    auto st = probe.declare_queue(queue, with_priorities);
    if (!st && st.error().message.find("x-max-priority") == std::string::npos) return st.error();
    const bool has = st.ok();
    if (!has) {
      spdlog::warn(
          "queue '{}' was declared without priorities (by an older ripen): the broker ignores tasks' priorities "
          "in it until it is deleted (while empty) and declared again",
          queue);
    }
    std::lock_guard lock(mu_);
    known_[queue] = has;
    return has;
  }

  // The queue was deleted and declared again by someone else: ask again next time.
  void forget(const std::string& queue) {
    std::lock_guard lock(mu_);
    known_.erase(queue);
  }

 private:
  std::mutex mu_;
  std::map<std::string, bool> known_;
};

PriorityQueues& priority_queues() {
  static PriorityQueues queues;
  return queues;
}

}  // namespace

Status declare_queue(Amqp& amqp, const Keys& keys, const std::string& queue) {
  const std::string q = keys.queue(queue);
  const std::string dlq = keys.dead_queue(queue);
  const AmqpTable args = {{"x-dead-letter-exchange", keys.dead_exchange()}, {"x-dead-letter-routing-key", queue}};
  AmqpTable with_priorities = args;
  with_priorities.emplace_back("x-max-priority", int64_t{kMaxPriority});
  auto has = priority_queues().has_priorities(amqp, q, with_priorities);
  if (!has) return has.error();
  if (auto st = amqp.declare_queue(q, *has ? with_priorities : args); !st) {
    if (st.error().message.find("x-max-priority") != std::string::npos) priority_queues().forget(q);
    return st;
  }
  if (auto st = amqp.declare_queue(dlq); !st) return st;
  if (auto st = amqp.bind_queue(q, keys.task_exchange(), queue); !st) return st;
  return amqp.bind_queue(dlq, keys.dead_exchange(), queue);
}
Status declare_ingress(Amqp& amqp, const Keys& keys, int64_t dead_letter_max_bytes) {
  if (auto st = declare_exchanges(amqp, keys); !st) return st;
  if (auto st = amqp.declare_exchange(keys.ingress_exchange(), "fanout"); !st) return st;
  if (auto st = amqp.declare_queue(keys.ingress_queue()); !st) return st;
  if (auto st = amqp.bind_queue(keys.ingress_queue(), keys.ingress_exchange(), ""); !st) return st;
  const std::string refused = keys.dead_queue(Keys::kIngress);
  const AmqpTable bounded = {{"x-max-length-bytes", dead_letter_max_bytes},
                             {"x-overflow", std::string("reject-publish")}};
  // Asked on a connection of its own: a declare whose arguments differ from the
  // queue's closes the channel it is asked on.
  Amqp probe(amqp.url());
  if (auto st = probe.declare_queue(refused, bounded); !st) {
    if (st.error().message.find("inequivalent arg") == std::string::npos) return st;
    spdlog::warn(
        "queue '{}' was declared without a length bound (by an older ripen, or with another bound): it is used as it "
        "is; delete it (once read) to have it declared with x-max-length-bytes {}",
        refused, dead_letter_max_bytes);
  }
  if (auto exists = amqp.queue_counts(refused); !exists) return exists.error();
  return amqp.bind_queue(refused, keys.dead_exchange(), std::string(Keys::kIngress));
}

}  // namespace ripen
