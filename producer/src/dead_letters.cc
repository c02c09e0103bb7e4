#include "ripen/dead_letters.h"

#include <cstdlib>

#include "ripen/envelope.h"
#include "ripen/keys.h"
#include "ripen/untrusted.h"

namespace ripen {
namespace {

std::string header(const AmqpGot& m, const std::string& name) {
  auto it = m.headers.find(name);
  return it == m.headers.end() ? std::string() : it->second;
}

DeadLetter dead_letter_of(const AmqpGot& m) {
  DeadLetter d;
  d.body = m.body;
  d.reason = header(m, "x-ripen-reason");
  d.error = header(m, "x-ripen-error");
  d.error_code = header(m, "x-ripen-error-code");
  d.attempts = std::atoi(header(m, "x-ripen-attempts").c_str());
  d.worker = header(m, "x-ripen-worker");
  if (auto env = decode_envelope(m.body)) {
    d.id = env->id;
    d.type = env->type;
  } else {
    d.id = m.message_id;
  }
  return d;
}

// A dead-letter queue is declared with its task queue (topology.cc): when it is
// missing, no worker or dispatcher has declared the task queue, which is most
// often a mistyped name. The broker's own words ("404 NOT_FOUND") say neither.
Error no_dead_letter_queue(const std::string& queue, const std::string& dlq) {
  return make_error(Errc::not_found, "no dead-letter queue for queue " + quote_short(queue) + ": " + dlq +
                                         " does not exist, as no worker or dispatcher has declared that queue "
                                         "(is the name right?)");
}

// How many messages the dead-letter queue of `queue` holds now: each call looks
// at that many at most, so the dead letters it leaves (and puts back) are not
// met twice.
Result<uint32_t> waiting(Amqp& amqp, const std::string& queue, const std::string& dlq) {
  auto n = amqp.queue_message_count(dlq);
  if (!n && n.error().code == Errc::not_found) return no_dead_letter_queue(queue, dlq);
  return n;
}

}  // namespace

nlohmann::ordered_json DeadLetter::to_json() const {
  nlohmann::ordered_json j = {{"id", id}, {"type", type}, {"reason", reason}, {"error", error}};
  if (!error_code.empty()) j["error_code"] = error_code;
  j["attempts"] = attempts;
  j["worker"] = worker;
  return j;
}

Result<std::vector<DeadLetter>> list_dead_letters(const Config& config, const std::string& queue, size_t limit) {
  if (auto st = check_queue_name(queue); !st) return st.error();
  Amqp amqp(amqp_url_of(config));
  const std::string dlq = Keys(config.ns, config.shards).dead_queue(queue);
  auto n = waiting(amqp, queue, dlq);
  if (!n) return n.error();
  std::vector<DeadLetter> out;
  for (uint32_t i = 0; i < *n && out.size() < limit; ++i) {
    auto got = amqp.get(dlq, /*no_ack=*/false);
    if (!got) return got.error();
    if (!got->has_value()) break;
    out.push_back(dead_letter_of(**got));
  }
  amqp.close();  // unacked: every message looked at goes back to its place
  return out;
}

Result<ReplayReport> replay_dead_letters(const Config& config, Producer& producer, const std::string& queue,
                                         const std::optional<std::string>& id) {
  if (auto st = check_queue_name(queue); !st) return st.error();
  Amqp amqp(amqp_url_of(config));
  const std::string dlq = producer.keys().dead_queue(queue);
  auto n = waiting(amqp, queue, dlq);
  if (!n) return n.error();
  ReplayReport report;
  for (uint32_t i = 0; i < *n; ++i) {
    auto got = amqp.get(dlq, /*no_ack=*/false);
    if (!got) return got.error();
    if (!got->has_value()) break;
    const AmqpGot& m = **got;
    auto env = decode_envelope(m.body, static_cast<size_t>(config.max_envelope_bytes));
    if (!env) {
      if (!id || m.message_id == *id) report.refused.push_back(m.message_id + ": " + env.error().message);
      continue;  // left unacked: it goes back when the connection closes
    }
    if (id && env->id != *id) continue;
    Envelope task = std::move(*env);
    task.attempt = 0;
    task.due_ms.reset();
    task.delay_ms.reset();
    task.created_ms = 0;
    auto r = producer.enqueue(task);
    if (!r && r.error().code != Errc::conflict) {
      // The wheel did not take it: the dead letter stays, and the rest wait for
      // another try rather than being replayed out of order around it.
      amqp.close();
      return r.error();
    }
    if (r && r->id.get() != task.id) {
      // Its idempotency key is held by another task now (enqueued since it
      // died): the wheel returned that one and stored nothing. Removing the
      // dead letter would lose it; it stays, and says why.
      report.refused.push_back(task.id + ": its idempotency key '" + task.idempotency_key + "' is held by task " +
                               r->id.get() + "; not replayed (the dead letter stays)");
      continue;  // left unacked: it goes back when the connection closes
    }
    // Stored, or (conflict, or the key held by this very id) live again
    // already: replayed before.
    if (auto st = amqp.ack(m.delivery_tag); !st) return st.error();
    report.replayed.push_back(task.id);
  }
  amqp.close();
  return report;
}

Result<uint32_t> purge_dead_letters(const Config& config, const std::string& queue) {
  if (auto st = check_queue_name(queue); !st) return st.error();
  Amqp amqp(amqp_url_of(config));
  const std::string dlq = Keys(config.ns, config.shards).dead_queue(queue);
  auto n = amqp.purge_queue(dlq);
  amqp.close();
  if (!n && n.error().code == Errc::not_found) return no_dead_letter_queue(queue, dlq);
  return n;
}

}  // namespace ripen
