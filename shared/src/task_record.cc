#include "ripen/task_record.h"

#include "ripen/ids.h"

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

Result<TaskRecord> read_task_record(Redis& redis, const Keys& keys, const std::string& id) {
  if (!is_valid_task_id(id)) {
    return make_error(Errc::invalid, "'" + id + "' is not a task id (1-64 characters of [A-Za-z0-9_-])");
  }
  auto r = redis.command({"HMGET", keys.task(id), "queue", "type", "state", "attempts", "max_attempts", "due_ms",
                          "created_ms", "dispatched_ms", "started_ms", "finished_ms", "last_error", "idem", "worker",
                          "body"});
  if (!r) return r.error();
  if (r->at(2).is_nil()) return make_error(Errc::not_found, "no task with id '" + id + "'");
  auto opt = [&](size_t i) -> std::optional<int64_t> {
    if (r->at(i).is_nil()) return std::nullopt;
    return r->at(i).integer();
  };
  TaskRecord t;
  t.id = id;
  t.queue = r->at(0).str();
  t.type = r->at(1).str();
  t.state = r->at(2).str();
  t.attempts = static_cast<int>(r->at(3).integer());
  t.max_attempts = static_cast<int>(r->at(4).integer());
  t.due_ms = r->at(5).integer();
  t.created_ms = opt(6);
  t.dispatched_ms = opt(7);
  t.started_ms = opt(8);
  t.finished_ms = opt(9);
  t.last_error = r->at(10).str();
  t.idempotency_key = r->at(11).str();
  t.worker = r->at(12).str();
  t.body = r->at(13).str();
  return t;
}

}  // namespace ripen
