#include "ripen/admission.h"

#include <cstddef>
#include <cstdint>

namespace ripen {

int next_queue(const std::vector<QueueLoad>& queues, int started_total, int room) {
  if (started_total >= room) return -1;
  int pick = -1;
  for (int i = 0; i < static_cast<int>(queues.size()); ++i) {
    const QueueLoad& q = queues[static_cast<std::size_t>(i)];
    if (q.waiting <= 0 || (q.cap > 0 && q.started >= q.cap)) continue;
    // started / weight < best.started / best.weight, in integers: no rounding
    // decides between two queues.
    if (pick < 0) {
      pick = i;
      continue;
    }
    const QueueLoad& best = queues[static_cast<std::size_t>(pick)];
    if (static_cast<int64_t>(q.started) * best.weight < static_cast<int64_t>(best.started) * q.weight) pick = i;
  }
  return pick;
}

}  // namespace ripen
