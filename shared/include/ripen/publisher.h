// A connection of its own for publishes that must be confirmed before their
// caller moves on (a worker's dead-letter copies): publisher confirms on, the
// broker's acks, nacks and connection.blocked read as they come, never waited
// on. Being a separate connection is the point: when the broker blocks
// publishers (a memory or disk alarm) it stops reading this socket, and a
// consumer's acks on its own connection still flow.
//
// Not thread-safe: one thread owns it (rabbitmq-c connections are not shared).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ripen/amqp.h"
#include "ripen/clock.h"
#include "ripen/result.h"

namespace ripen {

class ConfirmedPublisher {
 public:
  // A publish not confirmed within `confirm_timeout` (and not because the
  // broker blocks us) is given up on with its connection, as if it broke: the
  // caller publishes it again. A broker confirms within milliseconds; this is
  // for a connection that is up but no longer moves.
  ConfirmedPublisher(AmqpUrl url, Clock& clock = SystemClock::instance(),
                     std::chrono::milliseconds confirm_timeout = std::chrono::seconds(10));

  // How a publish ended: confirmed by the broker, or not (nacked, or its
  // connection broke before the confirm came: publish it again if it matters).
  struct Settled {
    uint64_t ticket = 0;
    bool confirmed = false;
  };

  // Publishes; returns its ticket, settled later through take_settled(). An
  // error when there is no connection or the broker blocks publishing (the
  // publish is not attempted: a write into a socket the broker does not read
  // could stall the caller).
  Result<uint64_t> publish(const std::string& exchange, const std::string& routing_key, std::string_view body,
                           const AmqpMessageProps& props);

  // Reads whatever the broker has sent without waiting: confirms, blocked /
  // unblocked, a close. Call it when fd() is readable, and now and then.
  void poll();
  // Publishes settled since the last call.
  std::vector<Settled> take_settled();

  size_t outstanding() const { return outstanding_.size(); }
  bool blocked() const { return blocked_; }
  bool connected() const { return amqp_.connected(); }
  int fd();  // -1 when not connected

 private:
  Status ensure_connected();
  void fail_outstanding();
  void settle(uint64_t tag, bool multiple, bool confirmed);

  struct Outstanding {
    uint64_t tag = 0;  // the broker's delivery tag
    uint64_t ticket = 0;
    Clock::time_point sent;
  };

  Clock& clock_;
  std::chrono::milliseconds confirm_timeout_;
  Amqp amqp_;
  bool blocked_ = false;
  uint64_t next_tag_ = 0;                 // the broker's delivery tag of the last publish
  std::vector<Outstanding> outstanding_;  // in publish order
  uint64_t next_ticket_ = 0;              // tickets stay unique across reconnects
  std::vector<Settled> settled_;
};

}  // namespace ripen
