// How the tasks of one queue that ripened together are cut into broker
// messages (bundles).
//
// RabbitMQ balances whole messages over a queue's consumers, so a bundle lands
// on one worker whatever that worker is doing. Cutting a burst into as many
// messages as the queue has consumers, or a multiple of that, in equal parts,
// gives each idle worker an equal share in one round of deliveries; each message
// still carries at most `max_bundle` tasks, so a big burst keeps the broker's
// cost per task low.
#pragma once
#include <cstddef>
#include <vector>

namespace ripen {

// The sizes, in order, of the messages that carry `tasks` tasks to a queue with
// `consumers` consumers: the fewest messages of at most `max_bundle` tasks each,
// rounded up to a multiple of `consumers` (or one task per message when there
// are fewer tasks than that), sizes differing by at most one. `consumers` 0 is
// taken as 1 (no one to spread over yet); `max_bundle` 0 as 1. Sums to `tasks`.
std::vector<size_t> bundle_sizes(size_t tasks, size_t max_bundle, size_t consumers);

}  // namespace ripen
