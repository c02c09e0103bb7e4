// Which queue's task starts next when a worker has room (see worker.h,
// "Executor"): apart from the worker so the rule can be tested on its own.
#pragma once

#include <chrono>
#include <vector>

namespace ripen {

struct QueueLoad {
  int waiting = 0;  // delivered tasks of the queue not yet started
  int started = 0;  // its tasks started here and not yet done
  int weight = 1;   // [worker.queue.<name>] weight, >= 1
  int cap = 0;      // [worker.queue.<name>] concurrency; 0 = none
};

// The index of the queue whose next task may start: among those with tasks
// waiting and below their cap, the one with the fewest started tasks for its
// weight (the first of equals). -1 when none may, or when `started_total` has
// reached `room` (concurrency + local queue).
int next_queue(const std::vector<QueueLoad>& queues, int started_total, int room);

// The most deliveries an automatic prefetch asks for.
inline constexpr int kMaxAutoPrefetch = 1024;

// The prefetch a worker asks the broker for when worker.prefetch is 0: enough
// messages that its handlers do not sit idle while starts, outcomes and acks
// make their round trips, and no more tasks than its `concurrency` handlers
// finish in `hold` at their recent pace (`handler_ms` a run) beyond one each,
// so that a burst does not queue here while another worker has a handler free.
// `tasks_per_message` (>= 1) is how many tasks a delivery has brought of late:
// the broker counts messages, and a bundle is one. Never below `concurrency`
// (each handler has a message to start), never above kMaxAutoPrefetch.
int auto_prefetch(int concurrency, double handler_ms, double tasks_per_message, std::chrono::milliseconds hold);

// Whether a worker asking for `current` should consume again to ask for
// `wanted`: only when they differ by 2x or more, so a handler time that
// wavers does not cancel and restart consumers over and over.
bool prefetch_moved(int current, int wanted);

}  // namespace ripen
