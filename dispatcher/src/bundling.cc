#include "ripen/bundling.h"

#include <algorithm>

namespace ripen {

std::vector<size_t> bundle_sizes(size_t tasks, size_t max_bundle, size_t consumers) {
  if (tasks == 0) return {};
  max_bundle = std::max<size_t>(max_bundle, 1);
  consumers = std::max<size_t>(consumers, 1);
  size_t messages = (tasks + max_bundle - 1) / max_bundle;
  // A multiple of the consumers, so that every consumer's share is equal: with
  // 320 tasks, bundles of 50 and 4 consumers, 7 messages would give the workers
  // 100, 100, 70 and 50 tasks; 8 give each 80.
  messages = (messages + consumers - 1) / consumers * consumers;
  messages = std::min(messages, tasks);
  std::vector<size_t> sizes(messages, tasks / messages);
  // The remainder one each to the first messages, so sizes differ by at most one.
  for (size_t i = 0; i < tasks % messages; ++i) ++sizes[i];
  return sizes;
}

}  // namespace ripen
