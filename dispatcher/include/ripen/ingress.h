// ripen::Ingress: enqueue over AMQP, for programs that have an AMQP client and
// no C++ (or HTTP) at hand. It consumes the ingress queue (keys.h: `<ns>.ingress`,
// fed by the fanout exchange of the same name) and puts each envelope in the
// timer wheel through the Producer, in batches of up to dispatcher.ingress_prefetch.
//
// Contract:
// - A message is acked only after its outcome is safe: its task is stored in
//   Redis, or its copy is confirmed by the broker in the ingress dead-letter queue
//   (`<ns>.dlq._ingress`, the reason in the header x-ripen-reason). Nothing is
//   dropped: while Redis says "not now" (loading, busy) the batch is held and
//   tried again; while it does not answer at all, the ingress hands back every
//   message it has not stored and consumes nothing until Redis answers (said
//   once per outage); and a process killed at any point leaves the message
//   unacked, so the broker delivers it again.
// - A delivered-again message does not schedule a second task when it names
//   itself: by the envelope's idempotency_key, else by the AMQP message_id
//   property (used as the idempotency key "amqp:<message_id>"), else by a
//   caller-chosen envelope id. A message with none of the three is enqueued
//   at-least-once: if the process dies between storing its task and acking it,
//   the redelivered copy is a second task. The examples always set message_id.
// - A message with reply_to gets one reply on the default exchange, with its
//   correlation_id echoed: {"ok":true,"id","created","due_ms"} or
//   {"ok":false,"code","error"}. A duplicate answers with the first task's id and
//   created=false.
// - One Ingress is one thread: run() until stop().
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "ripen/clock.h"
#include "ripen/config.h"

namespace ripen {

struct IngressStats {
  uint64_t received = 0;         // deliveries taken
  uint64_t enqueued = 0;         // tasks created
  uint64_t duplicates = 0;       // messages that named a task already there
  uint64_t refused = 0;          // messages dead-lettered with their reason
  uint64_t replies = 0;          // replies published
  uint64_t replies_refused = 0;  // replies not sent: reply_to named no reply queue (ingress.reply_to_prefix)
  uint64_t dropped = 0;          // refused messages dropped: the ingress dead-letter queue was full
};

class Ingress {
 public:
  explicit Ingress(const Config& config, std::string name, Clock& clock = SystemClock::instance());
  ~Ingress();
  Ingress(const Ingress&) = delete;
  Ingress& operator=(const Ingress&) = delete;

  void run();
  void stop();  // thread-safe
  IngressStats stats() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ripen
