// Which deliveries of one AMQP connection a worker may ack, and how: pure
// bookkeeping, apart from the I/O loop so that it can be tested on its own.
//
// A delivery holds one task or a bundle of them; it is acked once every one of
// its tasks is done with, or handed back (nack, requeue) if any of them was
// given back. Acks are sent in a batch: one `multiple` ack covers every queued
// tag below the lowest delivery still open (the broker spends less per message
// on one frame than on many), and the rest go one by one. A tag is acked or
// handed back exactly once, and never after the connection it came on is gone.
#pragma once

#include <cstddef>
#include <cstdint>
#include <set>
#include <unordered_map>
#include <vector>

namespace ripen {

class AckLedger {
 public:
  // A new connection: the tags of the old one mean nothing on it.
  void reset();

  // A delivery with `tasks` tasks (>= 1) arrived.
  void open(uint64_t tag, size_t tasks);

  // What becomes of a delivery when one of its tasks is done with.
  enum class Verdict {
    wait,     // tasks of it are still being worked on
    ack,      // all done: queued for the next take_acks()
    requeue,  // all done, one given back: nack it with requeue now (it is no longer unacked here)
    unknown,  // not a delivery of this connection (already settled, or from a broken one)
  };
  Verdict done(uint64_t tag, bool give_back);

  struct Acks {
    uint64_t multiple = 0;          // ack with `multiple` up to this tag (0: none)
    std::vector<uint64_t> singles;  // then each of these alone
    bool empty() const { return multiple == 0 && singles.empty(); }
  };
  // The acks to send now; they are no longer unacked here afterwards.
  Acks take_acks();

  size_t open_deliveries() const { return open_.size(); }
  size_t unacked() const { return unacked_.size(); }

 private:
  struct Open {
    size_t tasks = 0;        // its tasks not yet done with
    bool give_back = false;  // one of them was handed back: requeue rather than ack
  };
  std::unordered_map<uint64_t, Open> open_;  // deliveries by tag, until settled
  std::set<uint64_t> unacked_;               // tags neither acked nor handed back
  std::vector<uint64_t> to_ack_;             // settled as ack, not yet sent
};

}  // namespace ripen
