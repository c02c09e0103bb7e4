#include "ripen/producer.h"

#include <algorithm>
#include <map>
#include <thread>

#include "ripen/ids.h"
#include "ripen/scripts.h"
#include "ripen/stored_task.h"

namespace ripen {
namespace {

// How often a call re-sends after the connection dropped before giving up; the
// Redis client paces reconnects itself, this bounds the whole call.
constexpr int kSendAttempts = 4;
constexpr auto kRetryPause = std::chrono::milliseconds(150);

bool retryable(const Error& e) { return e.code == Errc::unavailable || e.code == Errc::timeout; }

}  // namespace

struct Producer::Prepared {
  size_t index = 0;  // in the caller's batch
  Envelope env;      // id assigned
  bool auto_id = false;
  bool maybe_landed = false;  // a send of this id broke off: it may be stored already
  int shard = 0;
  scripts::EnqueueRequest request;  // what the enqueue script is given (its id follows env.id)
};

Status check_caller_key(std::string_view key) {
  for (std::string_view prefix : kReservedKeyPrefixes) {
    if (key.substr(0, prefix.size()) == prefix) {
      return make_error(Errc::invalid, "field 'idempotency_key': the prefix '" + std::string(prefix) +
                                           "' is reserved for ripen's own keys");
    }
  }
  return {};
}

Producer::Producer(const Config& config, Clock& clock)
    : config_(config), clock_(clock), keys_(config.ns, config.shards), redis_(redis_url_of(config)) {}

std::string Producer::draw_id(const Envelope& task) {
  // An idempotent task's id is drawn in its key's shard so the key and the task
  // live in one hash slot (see keys.h).
  return task.idempotency_key.empty()
             ? new_task_id(clock_.epoch_ms())
             : new_task_id_in_shard(keys_, keys_.shard_of(task.idempotency_key), clock_.epoch_ms());
}

Result<Producer::Prepared> Producer::prepare(Envelope task) {
  // The payload is encoded once: for the size check and for the stored task.
  const std::string payload = encode_payload(task.payload);
  if (auto st = validate_envelope(task, static_cast<size_t>(config_.max_envelope_bytes), payload); !st) {
    return st.error();
  }
  if (task.max_attempts == 0) {
    auto type = config_.types.find(task.type);
    task.max_attempts = type != config_.types.end() && type->second.max_attempts > 0 ? type->second.max_attempts
                                                                                     : config_.default_max_attempts;
  }
  Prepared p;
  if (task.id.empty()) {
    task.id = draw_id(task);
    p.auto_id = true;
  } else if (!task.idempotency_key.empty() && keys_.shard_of(task.id) != keys_.shard_of(task.idempotency_key)) {
    return make_error(Errc::invalid,
                      "field 'id': a caller-chosen id cannot be combined with an idempotency_key here; "
                      "leave 'id' out and ripen picks one that fits the key");
  }
  p.shard = keys_.shard_of(task.id);
  // When it is due is the wheel's business (a retry moves it), and created_ms is
  // stamped by Redis: neither is in the stored fields.
  p.request.id = task.id;
  p.request.due_ms = task.due_ms;
  p.request.delay_ms = task.delay_ms.value_or(0);
  p.request.max_attempts = task.max_attempts;
  p.request.idempotency_key = task.idempotency_key;
  p.request.tail = pack_task_tail(task, payload);
  p.env = std::move(task);
  return p;
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
  // One script call stores up to this many tasks: large enough to pay the call's
  // fixed cost once per many tasks, small enough that a call never holds Redis
  // for long.
  constexpr size_t kPerCall = 256;
  std::vector<std::optional<Result<Enqueued>>> out(tasks.size());
  std::vector<Prepared> pending;
  pending.reserve(tasks.size());
  for (size_t i = 0; i < tasks.size(); ++i) {
    auto p = prepare(std::move(tasks[i]));
    if (!p) {
      out[i] = p.error();
    } else {
      p->index = i;
      pending.push_back(std::move(*p));
    }
  }
  Error last{Errc::unavailable, "not sent"};
  int broken = 0;  // sends that broke off; bounded by kSendAttempts
  while (!pending.empty() && broken < kSendAttempts) {
    // Group by shard, then chunk: a section's tasks share one hash slot, and a
    // call carries sections of several shards up to kPerCall tasks in all.
    std::map<int, std::vector<size_t>> by_shard;
    for (size_t k = 0; k < pending.size(); ++k) by_shard[pending[k].shard].push_back(k);
    std::vector<std::vector<std::vector<size_t>>> calls;  // call -> section -> tasks
    std::vector<scripts::EnqueueCall> scripts_calls;
    size_t in_call = kPerCall;
    for (auto& [shard, members] : by_shard) {
      for (size_t at = 0; at < members.size();) {
        if (in_call >= kPerCall) {
          calls.emplace_back();
          scripts_calls.emplace_back(keys_);
          in_call = 0;
        }
        const size_t take = std::min(members.size() - at, kPerCall - in_call);
        std::vector<size_t> section(members.begin() + static_cast<std::ptrdiff_t>(at),
                                    members.begin() + static_cast<std::ptrdiff_t>(at + take));
        at += take;
        in_call += take;
        std::vector<const scripts::EnqueueRequest*> requests;
        requests.reserve(section.size());
        for (size_t k : section) requests.push_back(&pending[k].request);
        scripts_calls.back().add(shard, requests);
        calls.back().push_back(std::move(section));
      }
    }
    for (auto& call : scripts_calls) call.append_to(redis_);
    auto replies = redis_.flush();
    std::vector<Prepared> again;
    auto keep = [&](Prepared& p, bool may_have_landed) {
      p.maybe_landed = p.maybe_landed || may_have_landed;
      again.push_back(std::move(p));
    };
    if (!replies) {
      last = replies.error();
      if (!retryable(last)) break;
      for (auto& p : pending) keep(p, true);
    } else {
      for (size_t c = 0; c < calls.size(); ++c) {
        const auto& reply = (*replies)[c];
        if (!reply) {
          last = reply.error();
          for (const auto& section : calls[c]) {
            for (size_t k : section) {
              if (retryable(last)) {
                keep(pending[k], true);
              } else {
                out[pending[k].index] = last;
              }
            }
          }
          continue;
        }
        for (size_t sec = 0; sec < calls[c].size(); ++sec) {
          const auto& section = calls[c][sec];
          auto results = sec < reply->size() ? scripts::EnqueueCall::read(reply->at(sec), section.size())
                                             : Result<std::vector<scripts::EnqueueReply>>(
                                                   make_error(Errc::internal, "enqueue script: unexpected reply"));
          if (!results) {
            for (size_t k : section) out[pending[k].index] = results.error();
            continue;
          }
          for (size_t j = 0; j < section.size(); ++j) {
            Prepared& p = pending[section[j]];
            const scripts::EnqueueReply& r = (*results)[j];
            const bool created = r.verdict == scripts::EnqueueVerdict::created;
            const bool id_taken = r.verdict == scripts::EnqueueVerdict::id_taken;
            Enqueued e{TaskId(r.id), created, r.due_ms};
            // After a send that broke off, "the id exists" (or "the key is held by
            // this very id") is our own earlier write that landed.
            if (!created && p.maybe_landed && e.id.get() == p.env.id) {
              e.created = true;
              out[p.index] = e;
            } else if (id_taken && p.auto_id) {
              // Another task drew the same id in the same millisecond: draw again.
              p.env.id = draw_id(p.env);
              p.request.id = p.env.id;
              p.shard = keys_.shard_of(p.env.id);
              p.maybe_landed = false;
              again.push_back(std::move(p));
            } else if (id_taken) {
              out[p.index] = make_error(Errc::conflict, "field 'id': a task with id '" + p.env.id + "' already exists");
            } else {
              out[p.index] = e;
            }
          }
        }
      }
    }
    if (!replies || std::any_of(again.begin(), again.end(), [](const Prepared& p) { return p.maybe_landed; })) {
      ++broken;
      if (!again.empty() && broken < kSendAttempts) std::this_thread::sleep_for(kRetryPause * broken);
    }
    pending = std::move(again);
  }
  for (const auto& p : pending) out[p.index] = last;
  std::vector<Result<Enqueued>> results;
  results.reserve(out.size());
  for (auto& r : out) results.push_back(std::move(*r));
  return results;
}

Result<TaskRecord> Producer::get(const TaskId& id) { return read_task_record(redis_, keys_, id.get()); }

Result<std::string> Producer::cancel(const TaskId& id, const std::string& reason) {
  auto r = scripts::run_cancel(redis_, keys_, id.get(), reason, config_.record_retention_ms);
  if (!r) return r.error();
  return std::string(to_string(*r));
}

Status Producer::pause_queue(const std::string& queue) {
  if (auto st = check_queue_name(queue); !st) return st;
  // Each shard's flag is what its settle script checks when a dispatcher holds a
  // task back; the fleet-wide set is what dispatchers read to decide to.
  for (int s = 0; s < keys_.shards(); ++s) redis_.append({"HSET", keys_.paused_flags(s), queue, "1"});
  redis_.append({"SADD", keys_.paused_queues(), queue});
  auto replies = redis_.flush();
  if (!replies) return replies.error();
  for (const auto& r : *replies) {
    if (!r) return r.error();
  }
  return {};
}

Result<int64_t> Producer::resume_queue(const std::string& queue) {
  if (auto st = check_queue_name(queue); !st) return st.error();
  // The fleet-wide set first: a dispatcher that still holds a task back after
  // its shard's flag is gone finds it gone and puts the task back itself.
  redis_.append({"SREM", keys_.paused_queues(), queue});
  for (int s = 0; s < keys_.shards(); ++s) {
    scripts::append_resume(redis_, keys_, s, queue);
  }
  auto replies = redis_.flush();
  if (!replies) return replies.error();
  int64_t moved = 0;
  for (const auto& r : *replies) {
    if (!r) return r.error();
  }
  for (size_t i = 1; i < replies->size(); ++i) moved += (*replies)[i]->integer();
  return moved;
}

Result<std::vector<std::string>> Producer::paused_queues() {
  auto r = redis_.command({"SMEMBERS", keys_.paused_queues()});
  if (!r) return r.error();
  std::vector<std::string> out;
  for (size_t i = 0; i < r->size(); ++i) out.push_back(r->at(i).str());
  std::sort(out.begin(), out.end());
  return out;
}

Status Producer::reschedule(const TaskId& id, int64_t due_epoch_ms) { return move(id, due_epoch_ms, 0); }

Status Producer::reschedule_in(const TaskId& id, std::chrono::milliseconds delay) {
  if (delay.count() < 0) return Error{Errc::invalid, "delay: must not be negative"};
  return move(id, std::nullopt, delay.count());
}

Status Producer::move(const TaskId& id, std::optional<int64_t> due_ms, int64_t delay_ms) {
  auto r = scripts::run_reschedule(redis_, keys_, id.get(), due_ms, delay_ms);
  if (!r) return r.error();
  return {};
}

}  // namespace ripen
