#include "ripen/inspect.h"

#include <algorithm>
#include <charconv>
#include <istream>
#include <map>
#include <memory>

#include "ripen/amqp.h"
#include "ripen/envelope.h"
#include "ripen/ids.h"
#include "ripen/scripts.h"

namespace ripen {
namespace {

// How many entries one survey run examines: enough to pay a round trip's cost
// many times over, few enough that a run holds Redis for a few milliseconds.
constexpr int64_t kChunk = 1000;

// The survey script's phases (scripts.cc), each a structure of a shard.
enum class Phase { due, inflight, status, ended };

const char* name_of(Phase p) {
  switch (p) {
    case Phase::due:
      return "due";
    case Phase::inflight:
      return "inflight";
    case Phase::status:
      return "status";
    case Phase::ended:
      return "ended";
  }
  return "";
}

char letter_of(Phase p) { return name_of(p)[0]; }

// Where the tasks of a state can be. A task claimed but not yet confirmed is in
// the in-flight set and reads as waiting; one whose handler started before the
// dispatcher settled its confirm is in the in-flight set and running.
std::vector<Phase> phases_for(const std::string& state) {
  if (state.empty()) return {Phase::due, Phase::inflight, Phase::status, Phase::ended};
  if (state == "scheduled" || state == "failed") return {Phase::due, Phase::inflight};
  // A paused queue's held tasks are out of both sets; only their STATUS says so.
  if (state == "dispatched" || state == "paused") return {Phase::status};
  if (state == "running") return {Phase::inflight, Phase::status};
  return {Phase::ended};
}

std::vector<std::string> survey_keys(const Keys& keys, int shard) {
  return {keys.due(shard), keys.inflight(shard), keys.tasks(shard), keys.status(shard), keys.ended_index(shard)};
}

// A place in a walk: a shard, a phase of it, and the survey script's position there.
struct Position {
  int shard = 0;
  size_t phase = 0;  // index into the query's phases
  std::string pos, after;
};

// "<shard>.<phase letter>.<pos>.<after>": no part holds a '.' (ids, scores and
// HSCAN cursors cannot), so it splits back exactly.
std::string encode_cursor(const Position& p, const std::vector<Phase>& phases) {
  return std::to_string(p.shard) + "." + letter_of(phases[p.phase]) + "." + p.pos + "." + p.after;
}

bool is_position_text(std::string_view pos) {
  return std::all_of(pos.begin(), pos.end(), [](char c) { return (c >= '0' && c <= '9') || c == ':' || c == '-'; });
}

Result<Position> decode_cursor(const std::string& text, const std::vector<Phase>& phases, const Keys& keys) {
  auto bad = [&](const std::string& why) {
    return make_error(Errc::invalid, "--cursor '" + text + "': " + why + "; pass the cursor an earlier page printed");
  };
  std::vector<std::string> parts;
  size_t from = 0;
  while (true) {
    const size_t dot = text.find('.', from);
    parts.push_back(text.substr(from, dot == std::string::npos ? std::string::npos : dot - from));
    if (dot == std::string::npos) break;
    from = dot + 1;
  }
  if (parts.size() != 4 || parts[1].size() != 1) return bad("not a cursor");
  Position p;
  auto [end, ec] = std::from_chars(parts[0].data(), parts[0].data() + parts[0].size(), p.shard);
  if (ec != std::errc() || end != parts[0].data() + parts[0].size() || p.shard < 0 || p.shard >= keys.shards()) {
    return bad("no such shard");
  }
  auto it = std::find_if(phases.begin(), phases.end(), [&](Phase ph) { return letter_of(ph) == parts[1][0]; });
  if (it == phases.end()) return bad("it belongs to a listing of another state");
  p.phase = static_cast<size_t>(it - phases.begin());
  if (!is_position_text(parts[2])) return bad("not a cursor");
  if (!parts[3].empty() && !is_valid_task_id(parts[3])) return bad("not a cursor");
  p.pos = parts[2];
  p.after = parts[3];
  return p;
}

// "queue|rest" at the first '|' (a queue name holds none).
std::pair<std::string, std::string> split_queue(const std::string& field) {
  const size_t bar = field.find('|');
  if (bar == std::string::npos) return {field, ""};
  return {field.substr(0, bar), field.substr(bar + 1)};
}

std::optional<int64_t> to_int(std::string_view text) {
  int64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return v;
}

}  // namespace

const std::vector<std::string>& task_states() {
  static const std::vector<std::string> states = {"scheduled", "failed", "paused",    "dispatched", "running",
                                                  "succeeded", "dead",   "cancelled", "discarded"};
  return states;
}

// ---- list ----------------------------------------------------------------------

Result<TaskPage> list_tasks(Redis& redis, const Keys& keys, const ListQuery& query) {
  if (query.queue.empty()) return make_error(Errc::invalid, "--queue is required");
  if (auto st = check_queue_name(query.queue); !st) return make_error(Errc::invalid, "--queue: " + st.error().message);
  if (!query.state.empty() &&
      std::find(task_states().begin(), task_states().end(), query.state) == task_states().end()) {
    return make_error(Errc::invalid, "--state: '" + query.state + "' is not a task state");
  }
  if (query.limit < 1 || query.limit > kMaxListLimit) {
    return make_error(Errc::invalid, "--limit: must be 1.." + std::to_string(kMaxListLimit));
  }
  const std::vector<Phase> phases = phases_for(query.state);
  Position at;
  if (!query.cursor.empty()) {
    auto p = decode_cursor(query.cursor, phases, keys);
    if (!p) return p.error();
    at = std::move(*p);
  }

  // Walk until the page is full and one more task has matched (then there are
  // more, and the cursor is where the page ended), or all is walked. In a set
  // every member has an exact place, so a page ends at its last task. A hash is
  // walked by HSCAN chunks, and a cursor is exact only between chunks: a page
  // ends before a chunk that does not fit in it whole, and the chunks asked for
  // are sized to what is left of the page, by the share of tasks that matched
  // so far. Only a chunk that alone holds more than a page is cut within.
  struct Match {
    std::string id;
    Position at;  // a walk resumed here starts right after it
  };
  std::vector<Match> matches;
  std::optional<Position> page_end;  // set once the page is full: where the next one starts
  bool more = false;
  int64_t examined = 0, matched = 0;
  while (true) {
    const Phase phase = phases[at.phase];
    const bool hash = phase == Phase::status || phase == Phase::ended;
    const int64_t room = static_cast<int64_t>(query.limit - matches.size());
    int64_t count = kChunk;
    if (hash && !page_end) count = std::clamp<int64_t>(room * (examined + 1) / (matched + 1) / 2, 1, kChunk);
    auto r = redis.eval(scripts::survey(), survey_keys(keys, at.shard),
                        {keys.shard_prefix(at.shard), name_of(phase), at.pos, at.after, std::to_string(count),
                         query.queue, query.state, "ids"});
    if (!r) return r.error();
    if (!r->is_array() || r->size() < 4) return make_error(Errc::internal, "survey script: unexpected reply");
    const size_t found = (r->size() - 4) / 3;
    examined += r->at(3).integer();
    matched += static_cast<int64_t>(found);
    if (page_end && found > 0) {
      more = true;
      break;
    }
    if (!hash || static_cast<int64_t>(found) <= room || matches.empty()) {
      // Whole, or a set's members one by one, or a chunk bigger than a page cut.
      size_t i = 0;
      for (; i < found && matches.size() < query.limit; ++i) {
        const size_t k = 4 + i * 3;
        matches.push_back({r->at(k).str(), {at.shard, at.phase, r->at(k + 1).str(), r->at(k + 2).str()}});
      }
      if (i < found) {
        more = true;
        page_end = matches.back().at;
        break;
      }
    } else {
      more = true;  // this chunk starts the next page
      page_end = at;
      break;
    }
    at.pos = r->at(0).str();
    at.after = r->at(1).str();
    const bool done = r->at(2).integer() == 1;
    if (done) {
      at.pos.clear();
      at.after.clear();
      if (++at.phase == phases.size()) {
        at.phase = 0;
        ++at.shard;
      }
    }
    // Full: the next page starts here, if anything else matches.
    if (matches.size() == query.limit && !page_end) page_end = at;
    if (at.shard == keys.shards()) break;
  }

  TaskPage page;
  const size_t take = matches.size();
  if (more) page.next_cursor = encode_cursor(*page_end, phases);
  // Records are read afresh, a few hundred per round trip; one that moved on
  // since the walk met it (another state, or gone) is left out.
  constexpr size_t kPerRead = 500;
  for (size_t from = 0; from < take; from += kPerRead) {
    std::vector<std::string> ids;
    for (size_t i = from; i < std::min(take, from + kPerRead); ++i) ids.push_back(matches[i].id);
    for (auto& rec : read_task_records(redis, keys, ids)) {
      if (!rec) {
        if (rec.error().code == Errc::not_found) continue;
        return rec.error();
      }
      if (rec->queue != query.queue || (!query.state.empty() && rec->state != query.state)) continue;
      page.tasks.push_back(std::move(*rec));
    }
  }
  return page;
}

// ---- stats ---------------------------------------------------------------------

std::optional<int64_t> LatenessHistogram::quantile(double q) const {
  if (samples == 0) return std::nullopt;
  const double want = q * static_cast<double>(samples);
  int64_t seen = 0;
  for (const auto& [bound, n] : buckets) {
    seen += n;
    if (static_cast<double>(seen) >= want) return bound;
  }
  return kInfinity;
}

nlohmann::ordered_json Stats::to_json() const {
  using json = nlohmann::ordered_json;
  auto opt = [](const std::optional<int64_t>& v) -> json { return v ? json(*v) : json(nullptr); };
  auto bound = [](const std::optional<int64_t>& v) -> json {
    if (!v) return nullptr;
    if (*v == LatenessHistogram::kInfinity) return "inf";
    return *v;
  };
  json qs = json::array();
  for (const auto& q : queues) {
    json buckets = json::object();
    for (const auto& [le, n] : q.lateness.buckets) {
      buckets[le == LatenessHistogram::kInfinity ? std::string("inf") : std::to_string(le)] = n;
    }
    qs.push_back({{"queue", q.queue},
                  {"scheduled", q.scheduled},
                  {"in_flight", q.in_flight},
                  {"ready", opt(q.ready)},
                  {"dead_letters", opt(q.dead_letters)},
                  {"running", q.running},
                  {"paused", q.paused},
                  {"held", q.held},
                  {"last_hour",
                   {{"succeeded", q.succeeded},
                    {"failed", q.failed},
                    {"dead", q.dead},
                    {"lateness_ms",
                     {{"p50", bound(q.lateness.quantile(0.5))},
                      {"p99", bound(q.lateness.quantile(0.99))},
                      {"samples", q.lateness.samples},
                      {"buckets", buckets}}}}}});
  }
  return {{"now_ms", now_ms},
          {"counts_complete", complete},
          {"scanned", scanned},
          {"walked_shards", walked_shards},
          {"broker_error", broker_error.empty() ? json(nullptr) : json(broker_error)},
          {"queues", qs}};
}

Result<Stats> collect_stats(const Config& config, Redis& redis, const Keys& keys, const StatsOptions& options) {
  Stats out;
  std::map<std::string, QueueStats> by_queue;
  auto queue = [&](const std::string& name) -> QueueStats& {
    QueueStats& q = by_queue[name];
    q.queue = name;
    return q;
  };

  // A '<queue>|<class>' count, from the live counts or a walk's tally (both
  // name classes as the scripts' prelude does).
  auto add = [&](const std::string& field, int64_t n) {
    auto [name, cls] = split_queue(field);
    QueueStats& q = queue(name);
    if (cls == "scheduled") {
      q.scheduled += n;
    } else if (cls == "in_flight") {
      q.in_flight += n;
    } else if (cls == "running") {
      q.running += n;
    } else if (cls == "held") {
      q.held += n;
    }
  };

  // 1. What waits, is in flight or runs: each shard's live counts, one read
  // per shard, where they are exact (keys.h, "counts"); the others are walked.
  const std::vector<Phase> phases = {Phase::due, Phase::inflight, Phase::status};
  struct Walk {
    size_t phase = 0;
    std::string pos, after;
    bool done = false;
  };
  std::vector<Walk> walks(static_cast<size_t>(keys.shards()));
  if (!options.walk) {
    for (int s = 0; s < keys.shards(); ++s) {
      redis.append({"HGETALL", keys.live_counts(s)});
      redis.append({"HLEN", keys.tasks(s)});
    }
    auto replies = redis.flush();
    if (!replies) return replies.error();
    for (int s = 0; s < keys.shards(); ++s) {
      const auto& r = (*replies)[2 * static_cast<size_t>(s)];
      const auto& live = (*replies)[2 * static_cast<size_t>(s) + 1];
      if (!r) return r.error();
      if (!live) return live.error();
      // A shard without live tasks has nothing to count, whatever its counts say.
      bool exact = live->integer() == 0;
      for (size_t i = 0; i + 1 < r->size(); i += 2) exact |= r->at(i).sv() == kExactCounts;
      if (!exact) continue;
      walks[static_cast<size_t>(s)].done = true;
      if (live->integer() == 0) continue;
      for (size_t i = 0; i + 1 < r->size(); i += 2) {
        if (r->at(i).sv() == kExactCounts) continue;
        if (const int64_t n = to_int(r->at(i + 1).sv()).value_or(0); n != 0) add(r->at(i).str(), n);
      }
    }
  }
  for (const Walk& w : walks) out.walked_shards += w.done ? 0 : 1;
  // The others walked side by side (one pipelined round trip per round), so a
  // walk cut short by the limit has seen a part of each shard rather than all
  // of a few.
  while (true) {
    std::vector<int> asked;
    for (int s = 0; s < keys.shards(); ++s) {
      if (!walks[static_cast<size_t>(s)].done) asked.push_back(s);
    }
    if (asked.empty()) break;
    const int64_t left = options.scan_limit - out.scanned;
    if (left <= 0) {
      out.complete = false;
      break;
    }
    const int64_t count = std::clamp<int64_t>(left / static_cast<int64_t>(asked.size()), 1, kChunk);
    for (int s : asked) {
      const Walk& w = walks[static_cast<size_t>(s)];
      redis.append_eval(
          scripts::survey(), survey_keys(keys, s),
          {keys.shard_prefix(s), name_of(phases[w.phase]), w.pos, w.after, std::to_string(count), "", "", "tally"});
    }
    auto replies = redis.flush();
    if (!replies) return replies.error();
    for (size_t k = 0; k < asked.size(); ++k) {
      const auto& r = (*replies)[k];
      if (!r) return r.error();
      if (!r->is_array() || r->size() < 4) return make_error(Errc::internal, "survey script: unexpected reply");
      Walk& w = walks[static_cast<size_t>(asked[k])];
      w.pos = r->at(0).str();
      w.after = r->at(1).str();
      out.scanned += r->at(3).integer();
      if (r->at(2).integer() == 1) {
        w.pos.clear();
        w.after.clear();
        if (++w.phase == phases.size()) w.done = true;
      }
      for (size_t i = 4; i + 1 < r->size(); i += 2) add(r->at(i).str(), r->at(i + 1).integer());
    }
  }

  auto paused = redis.command({"SMEMBERS", keys.paused_queues()});
  if (!paused) return paused.error();
  for (size_t i = 0; i < paused->size(); ++i) queue(paused->at(i).str()).paused = true;

  // 2. The last hour: the minute counters of every shard, 60 minutes back.
  auto now = redis.time_ms();
  if (!now) return now.error();
  out.now_ms = *now;
  constexpr int64_t kMinutes = 60;
  const int64_t minute = *now / 60'000;
  std::map<std::string, std::map<int64_t, int64_t>> late;
  const int per_trip = std::max(1, static_cast<int>(1000 / kMinutes));  // shards per round trip
  for (int first = 0; first < keys.shards(); first += per_trip) {
    const int last = std::min(keys.shards(), first + per_trip);
    for (int s = first; s < last; ++s) {
      for (int64_t m = minute - kMinutes + 1; m <= minute; ++m) redis.append({"HGETALL", keys.minute_counts(s, m)});
    }
    auto replies = redis.flush();
    if (!replies) return replies.error();
    for (const auto& r : *replies) {
      if (!r) return r.error();
      for (size_t i = 0; i + 1 < r->size(); i += 2) {
        auto [name, what] = split_queue(r->at(i).str());
        const int64_t n = to_int(r->at(i + 1).sv()).value_or(0);
        QueueStats& q = queue(name);
        if (what == "succeeded") {
          q.succeeded += n;
        } else if (what == "failed") {
          q.failed += n;
        } else if (what == "dead") {
          q.dead += n;
        } else if (what.rfind("late|", 0) == 0) {
          const std::string le = what.substr(5);
          const int64_t bound = le == "inf" ? LatenessHistogram::kInfinity : to_int(le).value_or(-1);
          if (bound >= 0) late[name][bound] += n;
        }
      }
    }
  }
  for (auto& [name, buckets] : late) {
    LatenessHistogram& h = queue(name).lateness;
    for (const auto& [bound, n] : buckets) {
      h.buckets.emplace_back(bound, n);
      h.samples += n;
    }
  }

  // 3. The broker: messages ready in each queue and its dead-letter queue, by
  // passive declare. A missing queue closes the channel, and the client then
  // paces its reconnect; a fresh client asks the next one at once.
  if (options.broker && !by_queue.empty()) {
    auto amqp = std::make_unique<Amqp>(amqp_url_of(config));
    auto count = [&](const std::string& name) -> std::optional<int64_t> {
      if (!out.broker_error.empty()) return std::nullopt;
      auto n = amqp->queue_message_count(name);
      if (n) return static_cast<int64_t>(*n);
      if (n.error().code == Errc::server || n.error().code == Errc::not_found) {
        amqp = std::make_unique<Amqp>(amqp_url_of(config));
      } else {
        out.broker_error = n.error().message;
      }
      return std::nullopt;
    };
    for (auto& [name, q] : by_queue) {
      q.ready = count(keys.queue(name));
      q.dead_letters = count(keys.dead_queue(name));
    }
    amqp->close();
  }

  for (auto& [name, q] : by_queue) out.queues.push_back(std::move(q));
  return out;
}

// ---- bulk enqueue --------------------------------------------------------------

Result<size_t> enqueue_lines(Producer& producer, std::istream& in, size_t max_envelope_bytes, size_t chunk,
                             const std::function<void(const LineOutcome&)>& each) {
  chunk = std::max<size_t>(chunk, 1);
  // The lines of a chunk in order: a bad one keeps its error in its place, so
  // outcomes are told in line order.
  struct Slot {
    size_t line;
    std::optional<Error> error;
    std::string queue;
  };
  std::vector<Slot> slots;
  std::vector<Envelope> envelopes;
  auto send = [&] {
    std::vector<Result<Enqueued>> results;
    if (!envelopes.empty()) results = producer.enqueue_batch(std::move(envelopes));
    size_t k = 0;
    for (auto& slot : slots) {
      if (slot.error) {
        each(LineOutcome{slot.line, std::move(*slot.error)});
      } else {
        each(LineOutcome{slot.line, std::move(results[k++]), std::move(slot.queue)});
      }
    }
    slots.clear();
    envelopes.clear();
  };
  size_t tasks = 0, line = 0;
  std::string text;
  while (std::getline(in, text)) {
    ++line;
    if (!text.empty() && text.back() == '\r') text.pop_back();
    if (text.find_first_not_of(" \t") == std::string::npos) continue;
    ++tasks;
    auto env = decode_envelope(text, max_envelope_bytes);
    if (env) {
      if (auto st = check_caller_key(env->idempotency_key); !st) env = st.error();
    }
    if (env) {
      slots.push_back({line, std::nullopt, env->queue});
      envelopes.push_back(std::move(*env));
    } else {
      slots.push_back({line, env.error(), ""});
    }
    if (slots.size() >= chunk) send();
  }
  send();
  if (in.bad()) return make_error(Errc::unavailable, "reading line " + std::to_string(line + 1) + " failed");
  return tasks;
}

}  // namespace ripen
