#include "ripen/admission.h"

#include <algorithm>
#include <cmath>
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

int auto_prefetch(int concurrency, double handler_ms, double tasks_per_message, std::chrono::milliseconds hold) {
  const int n = std::max(concurrency, 1);
  // A handler that takes no measurable time counts as a microsecond: the cap,
  // not a division by zero, then decides.
  const double per_handler = static_cast<double>(hold.count()) / std::max(handler_ms, 0.001);
  const double tasks = n + n * per_handler;
  const double messages = std::ceil(tasks / std::max(tasks_per_message, 1.0));
  return static_cast<int>(
      std::clamp(messages, static_cast<double>(n), static_cast<double>(std::max(n, kMaxAutoPrefetch))));
}

bool prefetch_moved(int current, int wanted) {
  return static_cast<int64_t>(wanted) >= 2 * static_cast<int64_t>(current) ||
         2 * static_cast<int64_t>(wanted) <= static_cast<int64_t>(current);
}

}  // namespace ripen
