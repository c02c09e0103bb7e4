#include "ripen/schedule_store.h"

#include <cstdio>
#include <map>

#include "ripen/untrusted.h"

namespace ripen {

std::string ScheduleState::encode() const { return version + "|" + std::to_string(cursor_ms) + "|" + last_task; }

std::optional<ScheduleState> ScheduleState::decode(const std::string& text) {
  const size_t a = text.find('|');
  const size_t b = a == std::string::npos ? a : text.find('|', a + 1);
  if (b == std::string::npos) return std::nullopt;
  ScheduleState s;
  s.version = text.substr(0, a);
  try {
    s.cursor_ms = std::stoll(text.substr(a + 1, b - a - 1));
  } catch (const std::exception&) {
    return std::nullopt;
  }
  s.last_task = text.substr(b + 1);
  return s;
}

std::string schedule_version(const ScheduleSpec& spec) {
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(stable_hash(spec.to_json().dump())));
  return hex;
}

std::vector<ScheduleChange> diff_schedules(const std::vector<StoredSchedule>& current,
                                           const std::vector<ScheduleSpec>& wanted) {
  std::map<std::string, const ScheduleSpec*> now;
  for (const auto& s : current) now[s.spec.name] = &s.spec;
  std::vector<ScheduleChange> out;
  std::map<std::string, bool> seen;
  for (const auto& w : wanted) {
    seen[w.name] = true;
    auto it = now.find(w.name);
    if (it == now.end()) {
      out.push_back({ScheduleChange::Kind::add, w.name, {}});
      continue;
    }
    const nlohmann::json before = it->second->to_json();
    const nlohmann::json after = w.to_json();
    if (before == after) continue;
    ScheduleChange change{ScheduleChange::Kind::change, w.name, {}};
    for (const auto& [key, value] : after.items()) {
      const nlohmann::json old = before.contains(key) ? before[key] : nlohmann::json();
      if (old != value) change.details.push_back(key + ": " + old.dump() + " -> " + value.dump());
    }
    out.push_back(std::move(change));
  }
  for (const auto& [name, spec] : now) {
    if (seen.count(name) == 0) out.push_back({ScheduleChange::Kind::remove, name, {}});
  }
  return out;
}

Envelope schedule_task(const ScheduleSpec& spec, int64_t tick_ms) {
  Envelope e = spec.task();
  e.due_ms = tick_ms;
  e.idempotency_key = "schedule:" + spec.name + ":" + std::to_string(tick_ms);
  e.headers = {{"schedule", spec.name}, {"tick_ms", std::to_string(tick_ms)}};
  return e;
}

namespace {

Result<ScheduleSpec> read_spec(const std::string& name, const std::string& text) {
  auto doc = parse_json_bounded(text);
  if (!doc) return Error{Errc::internal, "stored schedule " + quote_short(name) + " is " + doc.error().message};
  auto spec = ScheduleSpec::from_json(*doc);
  if (!spec) return Error{Errc::internal, "stored schedule " + quote_short(name) + ": " + spec.error().message};
  return spec;
}

}  // namespace

Result<std::vector<StoredSchedule>> ScheduleStore::list() {
  redis_.append({"HGETALL", keys_.schedule_specs()});
  redis_.append({"HGETALL", keys_.schedule_state()});
  auto replies = redis_.flush();
  if (!replies) return replies.error();
  for (const auto& r : *replies) {
    if (!r) return r.error();
  }
  std::map<std::string, std::string> states;
  const RedisReply& st = *(*replies)[1];
  for (size_t i = 0; i + 1 < st.size(); i += 2) states[st.at(i).str()] = st.at(i + 1).str();
  std::map<std::string, StoredSchedule> out;
  const RedisReply& specs = *(*replies)[0];
  for (size_t i = 0; i + 1 < specs.size(); i += 2) {
    const std::string name = specs.at(i).str();
    auto spec = read_spec(name, specs.at(i + 1).str());
    if (!spec) return spec.error();
    StoredSchedule s{std::move(*spec), std::nullopt, ""};
    if (auto it = states.find(name); it != states.end()) {
      s.state = ScheduleState::decode(it->second);
      s.raw_state = it->second;
    }
    out[name] = std::move(s);
  }
  std::vector<StoredSchedule> sorted;
  sorted.reserve(out.size());
  for (auto& [name, s] : out) sorted.push_back(std::move(s));
  return sorted;
}

Result<StoredSchedule> ScheduleStore::get(const std::string& name) {
  redis_.append({"HGET", keys_.schedule_specs(), name});
  redis_.append({"HGET", keys_.schedule_state(), name});
  auto replies = redis_.flush();
  if (!replies) return replies.error();
  for (const auto& r : *replies) {
    if (!r) return r.error();
  }
  if ((*replies)[0]->is_nil()) return Error{Errc::not_found, "no schedule named '" + name + "'"};
  auto spec = read_spec(name, (*replies)[0]->str());
  if (!spec) return spec.error();
  StoredSchedule s{std::move(*spec), std::nullopt, ""};
  if (!(*replies)[1]->is_nil()) {
    s.raw_state = (*replies)[1]->str();
    s.state = ScheduleState::decode(s.raw_state);
  }
  return s;
}

Status ScheduleStore::apply(const std::vector<ScheduleSpec>& wanted, const std::vector<ScheduleChange>& changes) {
  if (changes.empty()) return {};
  std::map<std::string, const ScheduleSpec*> by_name;
  for (const auto& w : wanted) by_name[w.name] = &w;
  redis_.append({"MULTI"});
  for (const auto& c : changes) {
    if (c.kind == ScheduleChange::Kind::remove) {
      redis_.append({"HDEL", keys_.schedule_specs(), c.name});
    } else {
      redis_.append({"HSET", keys_.schedule_specs(), c.name, by_name.at(c.name)->to_json().dump()});
    }
    // A new or changed spec starts from its next tick; a removed one has no state.
    redis_.append({"HDEL", keys_.schedule_state(), c.name});
  }
  redis_.append({"EXEC"});
  auto replies = redis_.flush();
  if (!replies) return replies.error();
  const auto& exec = replies->back();
  if (!exec) return exec.error();
  if (!exec->is_array()) return Error{Errc::server, "schedule apply: the transaction was not carried out"};
  return {};
}

Status ScheduleStore::record_trigger(const std::string& name, const std::string& task_id) {
  // Optimistic: the leader writes the state only now and then (once per tick),
  // so a retry or two at most.
  constexpr int kTries = 5;
  for (int i = 0; i < kTries; ++i) {
    if (auto w = redis_.command({"WATCH", keys_.schedule_specs(), keys_.schedule_state()}); !w) return w.error();
    auto stored = get(name);
    if (!stored) {
      (void)redis_.command({"UNWATCH"});
      return stored.error();
    }
    // No state yet (the leader has not looked at it): an empty version, which
    // the leader takes for a new spec, keeping the last task.
    ScheduleState state = stored->state.value_or(ScheduleState{});
    state.last_task = task_id;
    redis_.append({"MULTI"});
    redis_.append({"HSET", keys_.schedule_state(), name, state.encode()});
    redis_.append({"EXEC"});
    auto written = redis_.flush();
    if (!written) return written.error();
    const auto& exec = written->back();
    if (!exec) return exec.error();
    if (exec->is_array()) return {};
    // nil: the state or the spec changed since WATCH; read them again.
  }
  return Error{Errc::conflict, "schedule '" + name + "': its state kept changing; the last task was not recorded"};
}

Status ScheduleStore::save_state(const std::string& name, const ScheduleState& state) {
  auto r = redis_.command({"HSET", keys_.schedule_state(), name, state.encode()});
  if (!r) return r.error();
  return {};
}

Result<scripts::ScheduleSaveVerdict> ScheduleStore::save_state_fenced(const std::string& name, const std::string& lease,
                                                                      const std::string& expected,
                                                                      const std::string& state) {
  return scripts::save_schedule_state(redis_, keys_, lease, name, expected, state);
}

}  // namespace ripen
