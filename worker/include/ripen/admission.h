// Which queue's task starts next when a worker has room (see worker.h,
// "Executor"): apart from the worker so the rule can be tested on its own.
#pragma once

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

}  // namespace ripen
