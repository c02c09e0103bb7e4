#include "ripen/producer.h"

#include <thread>

#include "ripen/ids.h"
#include "ripen/scripts.h"

namespace ripen {
namespace {

// How often a call re-sends after the connection dropped before giving up; the
// Redis client paces reconnects itself, this bounds the whole call.
constexpr int kSendAttempts = 4;
constexpr auto kRetryPause = std::chrono::milliseconds(150);

bool retryable(const Error& e) { return e.code == Errc::unavailable || e.code == Errc::timeout; }

}  // namespace

struct Producer::Prepared {
  Envelope env;
  int shard = 0;
  std::string body;
};

Producer::Producer(const Config& config, Clock& clock)
    : config_(config), clock_(clock), keys_(config.ns, config.shards), redis_(redis_url_of(config)) {}

Result<Producer::Prepared> Producer::prepare(Envelope task) {
  const auto max_bytes = static_cast<size_t>(config_.max_envelope_bytes);
  if (auto st = validate_envelope(task, max_bytes); !st) return st.error();
  if (task.created_ms == 0) task.created_ms = clock_.epoch_ms();
  if (task.max_attempts == 0) task.max_attempts = config_.default_max_attempts;
  Prepared p;
  if (task.id.empty()) {
    // An idempotent task's id is drawn in its key's shard so the key and the
    // task live in one hash slot (see keys.h).
    task.id = task.idempotency_key.empty()
                  ? new_ulid(clock_.epoch_ms())
                  : new_task_id_in_shard(keys_, keys_.shard_of(task.idempotency_key), clock_.epoch_ms());
  } else if (!task.idempotency_key.empty() && keys_.shard_of(task.id) != keys_.shard_of(task.idempotency_key)) {
    return make_error(Errc::invalid,
                      "field 'id': a caller-chosen id cannot be combined with an idempotency_key here; "
                      "leave 'id' out and ripen picks one that fits the key");
  }
  p.shard = keys_.shard_of(task.id);
  // The stored body leaves out when it is due: that is the wheel's business, and
  // a retry moves it. The worker reads the current due time from the record.
  Envelope stored = task;
  stored.due_ms.reset();
  stored.delay_ms.reset();
  p.body = encode_envelope(stored);
  if (p.body.size() > max_bytes) {
    return make_error(Errc::invalid, "envelope is " + std::to_string(p.body.size()) + " bytes, over the limit of " +
                                         std::to_string(max_bytes) + " bytes");
  }
  p.env = std::move(task);
  return p;
}

void Producer::append(const Prepared& p) {
  const Envelope& e = p.env;
  std::vector<std::string> keys = {keys_.due(p.shard), keys_.task(e.id)};
  if (!e.idempotency_key.empty()) keys.push_back(keys_.idempotency(e.idempotency_key));
  redis_.append_eval(scripts::enqueue(), keys,
                     {e.id, p.body, e.queue, e.type, e.due_ms ? std::to_string(*e.due_ms) : "",
                      std::to_string(e.delay_ms.value_or(0)), std::to_string(e.max_attempts), keys_.wake_channel(),
                      std::to_string(p.shard), keys_.shard_prefix(p.shard), e.idempotency_key});
}

Result<Enqueued> Producer::interpret(const Prepared& p, const Result<RedisReply>& reply, bool retried) {
  if (!reply) return reply.error();
  const auto& r = *reply;
  if (!r.is_array() || r.size() != 3) return make_error(Errc::internal, "enqueue script: unexpected reply");
  const int64_t status = r.at(1).integer();
  Enqueued out{TaskId(r.at(0).str()), status == 1, r.at(2).integer()};
  // On a re-send, "already exists" (or "the key is held by this very id") is our
  // own earlier write that landed before the connection broke.
  if (retried && status != 1 && out.id.get() == p.env.id) {
    out.created = true;
    return out;
  }
  if (status == -1) return make_error(Errc::conflict, "field 'id': a task with id '" + p.env.id + "' already exists");
  return out;
}

Result<Enqueued> Producer::enqueue(Envelope task) {
  auto results = enqueue_batch({std::move(task)});
  return std::move(results.front());
}

Result<Enqueued> Producer::enqueue_in(Envelope task, std::chrono::milliseconds delay) {
  task.due_ms.reset();
  task.delay_ms = delay.count();
  return enqueue(std::move(task));
}

Result<Enqueued> Producer::enqueue_at(Envelope task, int64_t due_epoch_ms) {
  task.delay_ms.reset();
  task.due_ms = due_epoch_ms;
  return enqueue(std::move(task));
}

std::vector<Result<Enqueued>> Producer::enqueue_batch(std::vector<Envelope> tasks) {
  std::vector<std::optional<Result<Enqueued>>> out(tasks.size());
  std::vector<std::pair<size_t, Prepared>> pending;
  pending.reserve(tasks.size());
  for (size_t i = 0; i < tasks.size(); ++i) {
    auto p = prepare(std::move(tasks[i]));
    if (!p) {
      out[i] = p.error();
    } else {
      pending.emplace_back(i, std::move(*p));
    }
  }
  Error last{Errc::unavailable, "not sent"};
  for (int attempt = 0; attempt < kSendAttempts && !pending.empty(); ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(kRetryPause * attempt);
    for (const auto& [i, p] : pending) append(p);
    auto replies = redis_.flush();
    if (!replies) {
      last = replies.error();
      if (!retryable(last)) break;
      continue;
    }
    std::vector<std::pair<size_t, Prepared>> again;
    for (size_t k = 0; k < pending.size(); ++k) {
      auto r = interpret(pending[k].second, (*replies)[k], attempt > 0);
      if (!r && retryable(r.error())) {
        last = r.error();
        again.push_back(std::move(pending[k]));
      } else {
        out[pending[k].first] = std::move(r);
      }
    }
    pending = std::move(again);
  }
  for (const auto& [i, p] : pending) out[i] = last;
  std::vector<Result<Enqueued>> results;
  results.reserve(out.size());
  for (auto& r : out) results.push_back(std::move(*r));
  return results;
}

Result<TaskRecord> Producer::get(const TaskId& id) { return read_task_record(redis_, keys_, id.get()); }

}  // namespace ripen
