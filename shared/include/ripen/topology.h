// Declares ripen's AMQP topology (names from keys.h). Declarations are idempotent,
// so dispatchers and workers both declare what they use at start.
#pragma once

#include <string>

#include "ripen/amqp.h"
#include "ripen/keys.h"

namespace ripen {

// The task exchange, the dead-letter exchange and the unroutable dead-letter queue.
Status declare_exchanges(Amqp& amqp, const Keys& keys);

// A task queue and its dead-letter queue, bound to their exchanges. Messages a
// worker rejects without requeue go to the dead-letter queue.
Status declare_queue(Amqp& amqp, const Keys& keys, const std::string& queue);

// The ingress: a durable fanout exchange (the routing key is ignored), the
// durable queue the dispatchers consume from it, and the dead-letter queue for
// refused messages, bound to the dead-letter exchange.
Status declare_ingress(Amqp& amqp, const Keys& keys);

}  // namespace ripen
