#include "ripen/topology.h"

namespace ripen {

Status declare_exchanges(Amqp& amqp, const Keys& keys) {
  if (auto st = amqp.declare_exchange(keys.task_exchange(), "direct"); !st) return st;
  if (auto st = amqp.declare_exchange(keys.dead_exchange(), "direct"); !st) return st;
  const std::string unroutable = keys.dead_queue(Keys::kUnroutable);
  if (auto st = amqp.declare_queue(unroutable); !st) return st;
  return amqp.bind_queue(unroutable, keys.dead_exchange(), std::string(Keys::kUnroutable));
}

Status declare_queue(Amqp& amqp, const Keys& keys, const std::string& queue) {
  const std::string q = keys.queue(queue);
  const std::string dlq = keys.dead_queue(queue);
  if (auto st = amqp.declare_queue(
          q, {{"x-dead-letter-exchange", keys.dead_exchange()}, {"x-dead-letter-routing-key", queue}});
      !st) {
    return st;
  }
  if (auto st = amqp.declare_queue(dlq); !st) return st;
  if (auto st = amqp.bind_queue(q, keys.task_exchange(), queue); !st) return st;
  return amqp.bind_queue(dlq, keys.dead_exchange(), queue);
}
Status declare_ingress(Amqp& amqp, const Keys& keys) {
  if (auto st = declare_exchanges(amqp, keys); !st) return st;
  if (auto st = amqp.declare_exchange(keys.ingress_exchange(), "fanout"); !st) return st;
  if (auto st = amqp.declare_queue(keys.ingress_queue()); !st) return st;
  if (auto st = amqp.bind_queue(keys.ingress_queue(), keys.ingress_exchange(), ""); !st) return st;
  const std::string refused = keys.dead_queue(Keys::kIngress);
  if (auto st = amqp.declare_queue(refused); !st) return st;
  return amqp.bind_queue(refused, keys.dead_exchange(), std::string(Keys::kIngress));
}

}  // namespace ripen
