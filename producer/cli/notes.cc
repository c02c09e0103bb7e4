// What `ripen enqueue` and `ripen pause` add on stderr once the command has done
// its work: the truth about a held idempotency key, a due time already past,
// a queue no worker consumes. None of them changes the exit code: the task is
// in the wheel (or the queue paused) whatever they say.
#include <chrono>
#include <iostream>

#include "cli.h"
#include "ripen/amqp.h"
#include "ripen/duration.h"
#include "ripen/keys.h"
#include "ripen/untrusted.h"

namespace ripen::cli {

KeyHolder describe_key_holder(Producer& producer, const Config& config, const Enqueued& held) {
  const std::string& id = held.id.get();
  auto record = producer.get(held.id);
  if (!record) {
    // The key outlived its task's record (record_retention shorter than
    // idempotency_retention), or Redis went away between the two calls.
    return {"", "task " + id + " holds this idempotency key (its record cannot be read: " + record.error().message +
                    "); not added again"};
  }
  if (record->state == "succeeded") {
    return {record->state, "task " + id + " already succeeded with this idempotency key (keys are kept for " +
                               "idempotency_retention, " + format_duration_ms(config.idempotency_retention_ms) +
                               ", after success); not added again"};
  }
  return {record->state, "task " + id + " (" + record->state + ") already holds this idempotency key; not added again"};
}

void warn_if_past(Redis& redis, int64_t due_ms, std::string_view asked) {
  auto now = redis.time_ms();
  if (!now || due_ms >= *now) return;
  std::cerr << "ripen: warning: " << asked << " is " << approx_duration_ms(*now - due_ms)
            << " ago (by Redis's clock): the task is due now\n";
}

void warn_if_unconsumed(const Config& config, const std::vector<std::string>& queues, bool pausing) {
  // A short bound: the command's work is done, this is only advice.
  Amqp amqp(amqp_url_of(config), std::chrono::seconds(2));
  const Keys keys(config.ns, config.shards);
  for (const std::string& queue : queues) {
    auto counts = amqp.queue_counts(keys.queue(queue));
    if (counts && counts->consumers > 0) continue;
    const std::string name = quote_short(queue);
    if (counts) {
      std::cerr << "ripen: warning: no worker consumes queue " << name << " now"
                << (pausing ? "" : ": its tasks wait in the broker (state dispatched) until one does")
                << " (ripen-worker --queue " << queue << ")\n";
    } else if (counts.error().code == Errc::not_found) {
      if (pausing) {
        std::cerr << "ripen: warning: queue " << name
                  << " does not exist in the broker: no worker or dispatcher has declared it (is the name right?)\n";
      } else {
        // The dispatcher publishes with `mandatory`: a queue that is still
        // missing then returns the task, which ends dead (dispatcher.cc,
        // ensure_queue).
        std::cerr << "ripen: warning: queue " << name
                  << " does not exist in the broker, so no worker consumes it (is the name right?); if it still "
                     "does not exist when the task is published (a worker declares it, or the dispatcher if "
                     "dispatcher.auto_declare covers it), the task ends dead, \"unroutable\"\n";
      }
    } else {
      std::cerr << "ripen: note: could not ask the broker whether a worker consumes queue " << name << " ("
                << counts.error().message << ")\n";
      return;  // the broker is out of reach: asking about the next queue would only wait again
    }
  }
  amqp.close();
}

}  // namespace ripen::cli
