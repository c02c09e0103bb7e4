// Declares ripen's AMQP topology (names from keys.h). Declarations are idempotent,
// so dispatchers and workers both declare what they use at start.
#pragma once

#include <string>

#include "ripen/amqp.h"
#include "ripen/config.h"
#include "ripen/keys.h"

namespace ripen {

// The task exchange, the dead-letter exchange and the unroutable dead-letter queue.
Status declare_exchanges(Amqp& amqp, const Keys& keys);

// The highest task priority (0..kMaxPriority); a task queue is a priority queue
// of as many levels (x-max-priority), so the broker delivers a higher priority
// message first among those ready.
inline constexpr int kMaxPriority = 9;

// A task queue and its dead-letter queue, bound to their exchanges. Messages a
// worker rejects without requeue go to the dead-letter queue. A task queue that
// exists without priorities (declared by an older ripen) is used as it is, with
// a warning: the first declare of a queue in a process finds out which it is on
// a connection of its own, since a mismatch closes the channel it is asked on.
Status declare_queue(Amqp& amqp, const Keys& keys, const std::string& queue);

// The ingress: a durable fanout exchange (the routing key is ignored), the
// durable queue the dispatchers consume from it, and the dead-letter queue for
// refused messages, bound to the dead-letter exchange. That one is bounded to
// `dead_letter_max_bytes` (x-max-length-bytes; over it, the broker rejects what
// comes): anyone who may publish to the ingress can fill it. One declared
// without the bound (by an older ripen) is used as it is, with a warning.
Status declare_ingress(Amqp& amqp, const Keys& keys,
                       int64_t dead_letter_max_bytes = IngressPolicy().dead_letter_max_bytes);

}  // namespace ripen
