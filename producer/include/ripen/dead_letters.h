// Dead letters: what a queue's dead-letter queue (<ns>.dlq.<queue>) holds, and
// putting them back. A dead letter is one task envelope with headers naming why
// it died (x-ripen-reason, x-ripen-error, x-ripen-attempts, x-ripen-worker, and
// x-ripen-error-code when the handler gave one).
//
// Contract:
// - list_dead_letters() reads without taking: the messages it looked at go back
//   to their places in the queue.
// - replay_dead_letters() puts each chosen task back into the timer wheel, due
//   now, with its id, payload and settings and its attempts reset, and only then
//   removes its dead letter: a crash in between leaves the dead letter in place
//   and, at worst, a task that runs and is replayed again (its id makes the
//   second replay a no-op while the first is pending). A dead letter that is not
//   a valid envelope cannot be replayed: it stays, and is reported.
// - purge_dead_letters() removes every dead letter of the queue.
// - Each is Errc::not_found, naming the queue, when the queue has no dead-letter
//   queue (no worker or dispatcher has declared the queue: a mistyped name).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ripen/amqp.h"
#include "ripen/config.h"
#include "ripen/producer.h"
#include "ripen/result.h"

namespace ripen {

struct DeadLetter {
  std::string id;  // the task id ("" when the body is not an envelope)
  std::string type;
  std::string reason;      // "attempts exhausted", "permanent failure", "invalid envelope", "unroutable", ...
  std::string error;       // the last error
  std::string error_code;  // its code, when the handler gave one (ripen::Failure)
  int attempts = 0;
  std::string worker;
  std::string body;  // the envelope as dead-lettered

  nlohmann::ordered_json to_json() const;  // what `ripen dlq list` prints, one object per line
};

// Up to `limit` dead letters of task queue `queue`, oldest first.
Result<std::vector<DeadLetter>> list_dead_letters(const Config& config, const std::string& queue, size_t limit);

struct ReplayReport {
  std::vector<std::string> replayed;  // task ids put back into the wheel
  std::vector<std::string> refused;   // "<message id>: <why>" for dead letters that could not be replayed
};

// Replays the dead letters of `queue` whose task id is `id`, or all of them.
Result<ReplayReport> replay_dead_letters(const Config& config, Producer& producer, const std::string& queue,
                                         const std::optional<std::string>& id);

// Removes every dead letter of `queue`; returns how many there were.
Result<uint32_t> purge_dead_letters(const Config& config, const std::string& queue);

}  // namespace ripen
