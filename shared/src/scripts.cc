#include "ripen/scripts.h"

#include <algorithm>
#include <array>
#include <cassert>
#include <iterator>
#include <stdexcept>
#include <string>

#include "lua_sources.h"

namespace ripen::scripts {
namespace {

std::string_view file(std::string_view name) {
  for (const LuaSource& s : lua_sources()) {
    if (s.name == name) return s.text;
  }
  // The files are embedded by the build: a missing one is a build bug.
  throw std::logic_error("no embedded Lua file '" + std::string(name) + "'");
}

// Every script is the lifecycle table, the key builders and the shared
// helpers, then its own file; a sectioned one (it defines run()) ends with the
// loop that runs it once per section.
LuaScript make(const char* name, bool sectioned) {
  std::string source = lua_allowed_table();
  source += Keys::lua_key_builders();
  source += file("includes/prelude");
  source += file(name);
  if (sectioned) source += file("includes/sections");
  return LuaScript{name, std::move(source)};
}

#define RIPEN_SCRIPT(fn, sectioned)                  \
  const LuaScript& fn() {                            \
    static const LuaScript s = make(#fn, sectioned); \
    return s;                                        \
  }

}  // namespace

RIPEN_SCRIPT(enqueue, true)
RIPEN_SCRIPT(claim, true)
RIPEN_SCRIPT(settle, true)
RIPEN_SCRIPT(start, true)
RIPEN_SCRIPT(finish, true)
RIPEN_SCRIPT(sweep, true)
RIPEN_SCRIPT(cancel, false)
RIPEN_SCRIPT(reschedule, false)
RIPEN_SCRIPT(resume, false)
RIPEN_SCRIPT(read_ended, false)
RIPEN_SCRIPT(shard_lease, false)
RIPEN_SCRIPT(release_held, false)
RIPEN_SCRIPT(heartbeat, false)
RIPEN_SCRIPT(gate, false)
RIPEN_SCRIPT(survey, false)
RIPEN_SCRIPT(schedule_save, false)
#undef RIPEN_SCRIPT

std::vector<const LuaScript*> all() {
  return {&enqueue(),   &claim(),      &settle(), &start(),        &finish(),      &sweep(),
          &cancel(),    &reschedule(), &resume(), &read_ended(),   &shard_lease(), &release_held(),
          &heartbeat(), &gate(),       &survey(), &schedule_save()};
}

ScriptCall::ScriptCall(const LuaScript& script, size_t keys_per_section)
    : script_(script), keys_per_section_(keys_per_section) {
  args_.push_back(std::to_string(keys_per_section));
}

void ScriptCall::add(std::vector<std::string> keys, std::vector<std::string> args) {
  assert(keys.size() == keys_per_section_);
  keys_.insert(keys_.end(), std::make_move_iterator(keys.begin()), std::make_move_iterator(keys.end()));
  args_.push_back(std::to_string(args.size()));
  args_.insert(args_.end(), std::make_move_iterator(args.begin()), std::make_move_iterator(args.end()));
  ++sections_;
}

void ScriptCall::append_to(Redis& redis) {
  redis.append_eval(script_, std::move(keys_), std::move(args_));
  keys_.clear();
  args_.clear();
  sections_ = 0;
}

namespace {

Error bad_reply(const char* script) {
  return make_error(Errc::internal, std::string(script) + " script: unexpected reply");
}

// "refused:<state>" -> the state; absent if it names none.
TaskState refused_state(std::string_view word) {
  const auto at = word.find(':');
  if (at == std::string_view::npos) return TaskState::absent;
  return parse_task_state(word.substr(at + 1)).value_or(TaskState::absent);
}

// The per-task words of a settle or finish reply, read into `Reply`s: each is
// one of `words` (the result at the same index), or "refused:<state>".
template <class Reply, class Word, size_t N>
Result<std::vector<Reply>> read_words(RedisReply::View r, const char* script,
                                      const std::array<std::pair<std::string_view, Word>, N>& words, Word refused) {
  if (!r.is_array()) return bad_reply(script);
  std::vector<Reply> out(r.size());
  for (size_t i = 0; i < r.size(); ++i) {
    const std::string_view w = r.at(i).sv();
    if (w.rfind("refused:", 0) == 0) {
      out[i].result = refused;
      out[i].state = refused_state(w);
      continue;
    }
    const auto it = std::find_if(words.begin(), words.end(), [&](const auto& e) { return e.first == w; });
    if (it == words.end()) return bad_reply(script);
    out[i].result = it->second;
  }
  return out;
}

}  // namespace

// ---- enqueue ---------------------------------------------------------------------

void EnqueueCall::add(int shard, const std::vector<const EnqueueRequest*>& tasks) {
  std::vector<std::string> args = {keys_.shard_prefix(shard), keys_.wake_channel(), std::to_string(shard)};
  args.reserve(3 + tasks.size() * 6);
  for (const EnqueueRequest* t : tasks) {
    args.push_back(t->id);
    args.push_back(t->due_ms ? std::to_string(*t->due_ms) : "");
    args.push_back(std::to_string(t->delay_ms));
    args.push_back(std::to_string(t->max_attempts));
    args.push_back(t->idempotency_key);
    args.push_back(t->tail);
  }
  call_.add({keys_.due(shard), keys_.tasks(shard)}, std::move(args));
}

Result<std::vector<EnqueueReply>> EnqueueCall::read(RedisReply::View r, size_t tasks) {
  if (!r.is_array() || r.size() != tasks * 3) return bad_reply("enqueue");
  std::vector<EnqueueReply> out(tasks);
  for (size_t i = 0; i < tasks; ++i) {
    const int64_t status = r.at(i * 3 + 1).integer();
    out[i].verdict = status == 1   ? EnqueueVerdict::created
                     : status == 0 ? EnqueueVerdict::keyed
                                   : EnqueueVerdict::id_taken;
    out[i].id = r.at(i * 3).str();
    out[i].due_ms = r.at(i * 3 + 2).integer();
  }
  return out;
}

// ---- claim -----------------------------------------------------------------------

void ClaimCall::add(int shard, const std::string& lease, int batch) {
  call_.add({keys_.due(shard), keys_.inflight(shard), keys_.lease(shard), keys_.tasks(shard), keys_.status(shard)},
            {keys_.shard_prefix(shard), lease, std::to_string(batch), std::to_string(lease_ms_)});
}

ClaimReply ClaimCall::read(RedisReply::View r) {
  ClaimReply out;
  if (r.size() < 4) {
    out.fenced = true;  // {-1}
    return out;
  }
  out.now_ms = r.at(0).integer();
  out.next_ms = r.at(1).integer();
  out.recovered = r.at(2).integer();
  out.lease_deadline = r.at(3).integer();
  out.tasks.reserve((r.size() - 4) / 3);
  for (size_t i = 4; i + 2 < r.size(); i += 3)
    out.tasks.push_back({r.at(i).sv(), r.at(i + 1).sv(), r.at(i + 2).integer()});
  return out;
}

// ---- settle ----------------------------------------------------------------------

void SettleCall::add(int shard, const std::vector<SettleRequest>& publishes) {
  std::vector<std::string> args = {keys_.shard_prefix(shard), retention_};
  args.reserve(2 + publishes.size() * 4);
  for (const SettleRequest& p : publishes) {
    static constexpr const char* kLetter[] = {"d", "r", "x", "p"};
    args.push_back(p.id);
    args.emplace_back(kLetter[static_cast<size_t>(p.outcome)]);
    args.push_back(std::to_string(p.deadline));
    args.push_back(p.reason);
  }
  call_.add({keys_.due(shard), keys_.inflight(shard), keys_.status(shard), keys_.outstanding(shard)}, std::move(args));
}

Result<std::vector<SettleReply>> SettleCall::read(RedisReply::View r) {
  static constexpr std::array<std::pair<std::string_view, SettleResult>, 5> kWords = {{
      {"confirmed", SettleResult::confirmed},
      {"released", SettleResult::released},
      {"dead", SettleResult::dead},
      {"held", SettleResult::held},
      {"stale", SettleResult::stale},
  }};
  return read_words<SettleReply>(r, "settle", kWords, SettleResult::refused);
}

// ---- start -----------------------------------------------------------------------

void StartCall::add(int shard, const std::vector<StartRequest>& deliveries) {
  std::vector<std::string> args = {keys_.shard_prefix(shard), worker_};
  args.reserve(2 + deliveries.size() * 6);
  for (const StartRequest& d : deliveries) {
    args.emplace_back(d.id);
    args.push_back(std::to_string(d.run));
    args.push_back(std::to_string(d.lease_ms));
    args.emplace_back(d.queue);
    args.emplace_back(d.type);
    args.emplace_back(d.payload_digest);
  }
  call_.add({keys_.status(shard), keys_.outstanding(shard)}, std::move(args));
}

Result<std::vector<StartReply>> StartCall::read(RedisReply::View r) {
  if (!r.is_array() || r.size() % 4 != 0) return bad_reply("start");
  std::vector<StartReply> out(r.size() / 4);
  for (size_t k = 0; k < out.size(); ++k) {
    const size_t at = k * 4;
    const std::string_view verdict = r.at(at).sv();
    StartReply& o = out[k];
    if (verdict == "run") {
      o.verdict = StartVerdict::run;
      o.attempt = static_cast<int>(r.at(at + 1).integer());
      o.due_ms = r.at(at + 2).integer();
      o.now_ms = r.at(at + 3).integer();
    } else if (verdict == "busy") {
      o.verdict = StartVerdict::busy;
      o.busy_ms = r.at(at + 1).integer();
    } else if (verdict == "refused") {
      o.verdict = StartVerdict::refused;
      o.state = parse_task_state(r.at(at + 1).sv()).value_or(TaskState::absent);
    } else if (verdict == "missing") {
      o.verdict = StartVerdict::missing;
    } else if (verdict == "mismatch") {
      o.verdict = StartVerdict::mismatch;
    } else {
      return bad_reply("start");
    }
  }
  return out;
}

// ---- finish ----------------------------------------------------------------------

const char* to_string(FinishOutcome o) noexcept {
  static constexpr const char* kNames[] = {"ok", "retry", "dead", "defer", "unstart", "discard"};
  return kNames[static_cast<size_t>(o)];
}

void FinishCall::add(int shard, const std::vector<FinishRequest>& runs) {
  std::vector<std::string> args = {keys_.shard_prefix(shard), worker_, retention_, done_, keys_.wake_channel(),
                                   std::to_string(shard)};
  args.reserve(6 + runs.size() * 6);
  for (const FinishRequest& f : runs) {
    args.emplace_back(f.id);
    args.push_back(std::to_string(f.run));
    args.emplace_back(to_string(f.outcome));
    args.emplace_back(f.error);
    args.push_back(std::to_string(f.delay_ms));
    args.emplace_back(f.head);
  }
  call_.add({keys_.status(shard), keys_.due(shard), keys_.outstanding(shard)}, std::move(args));
}

Result<std::vector<FinishReply>> FinishCall::read(RedisReply::View r) {
  static constexpr std::array<std::pair<std::string_view, FinishResult>, 8> kWords = {{
      {"succeeded", FinishResult::succeeded},
      {"failed", FinishResult::failed},
      {"dead", FinishResult::dead},
      {"deferred", FinishResult::deferred},
      {"unstarted", FinishResult::unstarted},
      {"discarded", FinishResult::discarded},
      {"stale", FinishResult::stale},
      {"missing", FinishResult::missing},
  }};
  return read_words<FinishReply>(r, "finish", kWords, FinishResult::refused);
}

// ---- sweep -----------------------------------------------------------------------

void SweepCall::add(int shard, const std::string& lease, const std::vector<std::string>& clear) {
  std::vector<std::string> args = {keys_.shard_prefix(shard), lease, std::to_string(lost_after_),
                                   std::to_string(recheck_), std::to_string(limit_)};
  args.insert(args.end(), clear.begin(), clear.end());
  call_.add({keys_.lease(shard), keys_.outstanding(shard), keys_.status(shard), keys_.tasks(shard)}, std::move(args));
}

SweepReply SweepCall::read(RedisReply::View r) {
  SweepReply out;
  if (r.size() < 2) {
    out.fenced = true;  // {-1}
    return out;
  }
  out.swept = r.at(0).integer();
  out.held = r.at(1).integer();
  for (size_t i = 2; i < r.size(); ++i) out.queues.push_back(r.at(i).str());
  return out;
}

// ---- single-shard scripts ----------------------------------------------------------

Result<TaskState> run_cancel(Redis& redis, const Keys& keys, const std::string& id, const std::string& reason,
                             int64_t retention_ms) {
  const int shard = keys.shard_of(id);
  auto r = redis.eval(cancel(), {keys.due(shard), keys.inflight(shard), keys.status(shard), keys.outstanding(shard)},
                      {keys.shard_prefix(shard), std::to_string(retention_ms), id, reason});
  if (!r) return r.error();
  const std::string verdict = r->at(0).str();
  if (verdict == "missing")
    return Error{Errc::not_found, "no task " + id + " (never existed, or its record has expired)"};
  const auto state = parse_task_state(r->at(1).sv());
  if (!state) return bad_reply("cancel");
  if (verdict == "cancelled") return *state;
  if (*state == TaskState::running) {
    return Error{Errc::conflict,
                 "task " + id + " is running on worker " + r->at(2).str() + "; a running task cannot be cancelled"};
  }
  return Error{Errc::conflict, "task " + id + " has already ended: " + to_string(*state)};
}

Result<int64_t> run_reschedule(Redis& redis, const Keys& keys, const std::string& id, std::optional<int64_t> due_ms,
                               int64_t delay_ms) {
  const int shard = keys.shard_of(id);
  auto r = redis.eval(reschedule(), {keys.due(shard), keys.status(shard)},
                      {keys.shard_prefix(shard), id, due_ms ? std::to_string(*due_ms) : "", std::to_string(delay_ms),
                       keys.wake_channel(), std::to_string(shard)});
  if (!r) return r.error();
  const std::string verdict = r->at(0).str();
  if (verdict == "rescheduled") return r->at(1).integer();
  if (verdict == "missing")
    return Error{Errc::not_found, "no task " + id + " (never existed, or its record has expired)"};
  const auto state = parse_task_state(r->at(1).sv());
  if (!state) return bad_reply("reschedule");
  if (is_ended(*state)) return Error{Errc::conflict, "task " + id + " has already ended: " + to_string(*state)};
  return Error{Errc::conflict,
               "task " + id + " is " + to_string(*state) + ": only a task waiting in the wheel can be rescheduled"};
}

void append_resume(Redis& redis, const Keys& keys, int shard, const std::string& queue) {
  redis.append_eval(resume(),
                    {keys.due(shard), keys.status(shard), keys.paused_flags(shard), keys.parked(shard, queue)},
                    {keys.wake_channel(), std::to_string(shard), queue, keys.shard_prefix(shard)});
}

std::optional<std::string> read_lease(const RedisReply& reply) {
  if (reply.is_string()) return reply.str();
  return std::nullopt;
}

Result<std::optional<std::string>> take_lease(Redis& redis, const std::string& lease_key, const std::string& fence_key,
                                              const std::string& owner, int64_t ttl_ms) {
  auto r = redis.eval(shard_lease(), {lease_key, fence_key}, {owner, std::to_string(ttl_ms)});
  if (!r) return r.error();
  return read_lease(*r);
}

void append_take_lease(Redis& redis, const std::string& lease_key, const std::string& fence_key,
                       const std::string& owner, int64_t ttl_ms) {
  redis.append_eval(shard_lease(), {lease_key, fence_key}, {owner, std::to_string(ttl_ms)});
}

Result<bool> release_held(Redis& redis, const std::string& key, const std::string& value) {
  auto r = redis.eval(release_held(), {key}, {value});
  if (!r) return r.error();
  return r->integer() == 1;
}

void append_release_held(Redis& redis, const std::string& key, const std::string& value) {
  redis.append_eval(release_held(), {key}, {value});
}

void append_gate(Redis& redis, const Keys& keys, const std::string& type, const GateRequest& g) {
  redis.append_eval(gate(), {keys.type_lock(type), keys.type_waiters(type), keys.type_waiting(type)},
                    {g.serial ? "serial" : "discard", g.holder, g.task_id, std::to_string(g.order),
                     std::to_string(g.lease_ms), std::to_string(g.wait_ms)});
}

Result<GateReply> read_gate(const Result<RedisReply>& reply) {
  if (!reply) return reply.error();
  if (!reply->is_array() || reply->size() != 2) return bad_reply("gate");
  GateReply out;
  const std::string_view v = reply->at(0).sv();
  if (v == "run") {
    out.verdict = GateVerdict::run;
  } else if (v == "wait") {
    out.verdict = GateVerdict::wait;
  } else if (v == "busy") {
    out.verdict = GateVerdict::busy;
  } else {
    return bad_reply("gate");
  }
  out.n = reply->at(1).integer();
  return out;
}

Result<ScheduleSaveVerdict> save_schedule_state(Redis& redis, const Keys& keys, const std::string& lease,
                                                const std::string& name, const std::string& expected,
                                                const std::string& state) {
  auto r = redis.eval(schedule_save(), {keys.schedule_leader(), keys.schedule_state()}, {lease, name, expected, state});
  if (!r) return r.error();
  const std::string_view v = r->view().sv();
  if (v == "saved") return ScheduleSaveVerdict::saved;
  if (v == "fenced") return ScheduleSaveVerdict::fenced;
  if (v == "moved") return ScheduleSaveVerdict::moved;
  return bad_reply("schedule_save");
}

}  // namespace ripen::scripts
