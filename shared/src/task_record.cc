#include "ripen/task_record.h"

#include <charconv>

#include "ripen/ids.h"
#include "ripen/scripts.h"
#include "ripen/stored_task.h"

namespace ripen {

nlohmann::ordered_json TaskRecord::to_json() const {
  using json = nlohmann::ordered_json;
  auto opt = [](const std::optional<int64_t>& v) -> json { return v ? json(*v) : json(nullptr); };
  auto str = [](const std::string& v) -> json { return v.empty() ? json(nullptr) : json(v); };
  // The order people read it in: what it is, where it stands, when things happened.
  return {{"id", id},
          {"queue", queue},
          {"type", type},
          {"state", state},
          {"attempts", attempts},
          {"max_attempts", max_attempts},
          {"due_ms", due_ms},
          {"created_ms", opt(created_ms)},
          {"dispatched_ms", opt(dispatched_ms)},
          {"started_ms", opt(started_ms)},
          {"finished_ms", opt(finished_ms)},
          {"last_error", str(last_error)},
          {"idempotency_key", str(idempotency_key)},
          {"worker", str(worker)}};
}

namespace {

std::optional<int64_t> stamp(std::string_view field) {
  int64_t v = 0;
  auto [p, ec] = std::from_chars(field.data(), field.data() + field.size(), v);
  if (field.empty() || ec != std::errc() || p != field.data() + field.size()) return std::nullopt;
  return v;
}

// A STATUS into the record.
void apply_status(TaskRecord& t, const StoredStatus& st) {
  t.state = std::string(st.state);
  t.attempts = st.attempts;
  t.due_ms = stamp(st.due).value_or(0);
  t.dispatched_ms = stamp(st.dispatched);
  t.started_ms = stamp(st.started);
  t.finished_ms = stamp(st.finished);
  // The runner is stored as `worker#run`; the run token only matters to the start script.
  t.worker = std::string(st.runner.substr(0, std::min(st.runner.size(), st.runner.rfind('#'))));
  t.last_error = std::string(st.last_error);
}

void apply_task(TaskRecord& t, const StoredTask& task) {
  t.queue = std::string(task.queue);
  t.type = std::string(task.type);
  t.max_attempts = task.max_attempts;
  t.created_ms = task.created_ms;
  t.idempotency_key = std::string(task.idempotency_key);
}

Error corrupt(const std::string& id, const char* what) {
  return make_error(Errc::internal, "task '" + id + "': its " + std::string(what) + " in Redis is malformed");
}

// From the replies to HGET tasks, HGET status, ZSCORE due, ZSCORE inflight, read_ended.
Result<TaskRecord> assemble(const std::string& id, const RedisReply& task, const RedisReply& status,
                            const RedisReply& score, const RedisReply& inflight, const RedisReply& ended) {
  TaskRecord t;
  t.id = id;
  // A live task wins over an ended record of the same id: a dead task replayed
  // from its dead-letter queue lives again under its id while the record of its
  // death is still kept.
  if (!task.is_string() && ended.is_string()) {
    const std::string packed = ended.str();
    auto e = parse_stored_ended(packed);
    if (!e) return corrupt(id, "ended record");
    apply_status(t, e->status);
    if (!e->head.empty()) {  // empty when the task's TASK was already gone as it ended
      std::string tail(e->head);
      tail.push_back(kSep);  // the stored TASK without its payload: give it an empty one
      auto stored = parse_stored_task(tail);
      if (!stored) return corrupt(id, "ended record");
      apply_task(t, *stored);
    }
    return t;
  }
  if (!task.is_string()) return make_error(Errc::not_found, "no task with id '" + id + "'");
  const std::string packed_task = task.str();
  auto stored = parse_stored_task(packed_task);
  if (!stored) return corrupt(id, "task");
  apply_task(t, *stored);
  if (status.is_string()) {
    const std::string packed_status = status.str();
    auto st = parse_stored_status(packed_status);
    if (!st) return corrupt(id, "status");
    apply_status(t, *st);
    // The claim stamps `dispatched` as it takes the task; until the broker's
    // confirm is settled the task is still the wheel's (it goes back there if the
    // confirm never comes), so it reads as waiting.
    if (t.state == "dispatched" && !inflight.is_nil()) t.state = t.attempts > 0 ? "failed" : "scheduled";
  } else {
    // Never claimed: waiting in the wheel.
    t.state = "scheduled";
    t.due_ms = score.integer();
  }
  return t;
}

}  // namespace

std::vector<Result<TaskRecord>> read_task_records(Redis& redis, const Keys& keys, const std::vector<std::string>& ids) {
  std::vector<Result<TaskRecord>> out;
  out.reserve(ids.size());
  std::vector<size_t> asked;
  for (size_t i = 0; i < ids.size(); ++i) {
    const std::string& id = ids[i];
    if (!is_valid_task_id(id)) continue;
    const int shard = keys.shard_of(id);
    redis.append({"HGET", keys.tasks(shard), id});
    redis.append({"HGET", keys.status(shard), id});
    redis.append({"ZSCORE", keys.due(shard), id});
    redis.append({"ZSCORE", keys.inflight(shard), id});
    redis.append_eval(scripts::read_ended(), {keys.ended_index(shard)}, {keys.shard_prefix(shard), id});
    asked.push_back(i);
  }
  auto replies =
      asked.empty() ? Result<std::vector<Result<RedisReply>>>(std::vector<Result<RedisReply>>()) : redis.flush();
  size_t next = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (next >= asked.size() || asked[next] != i) {
      out.emplace_back(
          make_error(Errc::invalid, "'" + ids[i] + "' is not a task id (1-64 characters of [A-Za-z0-9_-])"));
      continue;
    }
    if (!replies) {
      out.emplace_back(replies.error());
    } else {
      const auto& r = *replies;
      constexpr size_t kPerId = 5;
      const size_t at = next * kPerId;
      const Result<RedisReply>* failed = nullptr;
      for (size_t k = 0; k < kPerId; ++k) {
        if (!r[at + k]) failed = &r[at + k];
      }
      if (failed != nullptr) {
        out.emplace_back(failed->error());
      } else {
        out.push_back(assemble(ids[i], *r[at], *r[at + 1], *r[at + 2], *r[at + 3], *r[at + 4]));
      }
    }
    ++next;
  }
  return out;
}

Result<TaskRecord> read_task_record(Redis& redis, const Keys& keys, const std::string& id) {
  return std::move(read_task_records(redis, keys, {id}).front());
}

}  // namespace ripen
