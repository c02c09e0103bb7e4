#include "ripen/schedules.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <sstream>

#include <toml++/toml.h>

#include "ripen/cron.h"
#include "ripen/duration.h"

namespace ripen {
namespace {

using nlohmann::json;

// What is wrong with one key of a schedule; the caller adds where.
struct Problem {
  std::string key;
  std::string reason;
};

constexpr std::array<std::string_view, 13> kFileKeys = {
    "name",    "cron",          "timezone",     "queue",   "type",       "payload", "overlap",
    "misfire", "misfire_limit", "max_attempts", "timeout", "downstream", "priority"};

constexpr int kMaxMisfireLimit = 10'000;
constexpr int kMaxAttempts = 1000;
constexpr int64_t kMaxTimeoutMs = 7LL * 24 * 3600 * 1000;  // the envelope's limit

std::string who(const std::string& name, int index) {
  if (!name.empty()) return "schedule '" + name + "'";
  return index > 0 ? "schedule #" + std::to_string(index) : "schedule";
}

// The envelope's message names its own field; a schedule's keys are mostly the
// same names, but the envelope's "timeout_ms" is the file's "timeout", and its
// size limit is a matter of the payload.
Problem envelope_problem(const std::string& message, size_t limit) {
  static constexpr std::string_view kPrefix = "field '";
  if (message.rfind(kPrefix, 0) == 0) {
    const size_t end = message.find("': ", kPrefix.size());
    if (end != std::string::npos) {
      std::string key = message.substr(kPrefix.size(), end - kPrefix.size());
      if (key == "timeout_ms") key = "timeout";
      return {key, message.substr(end + 3)};
    }
  }
  return {"payload", message + " (" + std::to_string(limit) + " = the envelope limit less " +
                         std::to_string(kScheduleEnvelopeHeadroom) + " bytes kept for the dispatcher's fields)"};
}

// Every rule of a spec, checked in the order of the file's keys; the first broken.
std::optional<Problem> check(const ScheduleSpec& s, size_t max_envelope_bytes) {
  if (s.name.empty()) return Problem{"name", "is required"};
  if (!is_downstream_name(s.name)) return Problem{"name", "must be 1-128 characters of [A-Za-z0-9._:-]"};
  if (s.cron.empty()) return Problem{"cron", "is required"};
  auto cron = CronExpr::parse(s.cron);
  if (!cron) {
    // "cron '61 * * * *': minute: ..." -> key "cron", reason "'61 * * * *': minute: ...".
    const std::string& m = cron.error().message;
    return Problem{"cron", m.rfind("cron ", 0) == 0 ? m.substr(5) : m};
  }
  if (!cron->ever_fires()) {
    return Problem{"cron", "'" + s.cron + "' never fires (no listed day of the month exists in a listed month)"};
  }
  if (auto zone = TimeZone::named(s.timezone); !zone) return Problem{"timezone", zone.error().message};
  if (s.overlap != "allow" && s.overlap != "skip") return Problem{"overlap", "must be \"allow\" or \"skip\""};
  if (s.misfire != "skip" && s.misfire != "run_once" && s.misfire != "run_all") {
    return Problem{"misfire", "must be \"skip\", \"run_once\" or \"run_all\""};
  }
  if (s.misfire_limit < 1 || s.misfire_limit > kMaxMisfireLimit) {
    return Problem{"misfire_limit", "must be between 1 and " + std::to_string(kMaxMisfireLimit)};
  }
  // The task fields go through the envelope's own rules, so a schedule can
  // never make a task the producer would refuse.
  const Envelope env = s.task();
  const size_t limit =
      max_envelope_bytes > kScheduleEnvelopeHeadroom ? max_envelope_bytes - kScheduleEnvelopeHeadroom : 0;
  if (auto st = validate_envelope(env, limit); !st) return envelope_problem(st.error().message, limit);
  return std::nullopt;
}

// ---- TOML -> spec ---------------------------------------------------------------

std::string two_digits(unsigned v) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%02u", v % 100);
  return buf;
}

std::string rfc3339(const toml::date& d) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04u-%02u-%02u", unsigned{d.year}, unsigned{d.month}, unsigned{d.day});
  return buf;
}

std::string rfc3339(const toml::time& t) {
  std::string out = two_digits(t.hour) + ":" + two_digits(t.minute) + ":" + two_digits(t.second);
  if (t.nanosecond != 0) {
    char buf[16];
    std::snprintf(buf, sizeof buf, ".%09u", unsigned{t.nanosecond});
    std::string frac = buf;
    frac.erase(frac.find_last_not_of('0') + 1);
    out += frac;
  }
  return out;
}

std::string rfc3339(const toml::date_time& dt) {
  std::string out = rfc3339(dt.date) + "T" + rfc3339(dt.time);
  // A local date-time (no offset in the file) stays without one: inventing
  // UTC would change what the author wrote.
  if (dt.offset) {
    const int m = dt.offset->minutes;
    if (m == 0) {
      out += "Z";
    } else {
      const unsigned a = static_cast<unsigned>(m < 0 ? -m : m);
      out += (m < 0 ? "-" : "+") + two_digits(a / 60) + ":" + two_digits(a % 60);
    }
  }
  return out;
}

struct Located {
  int line;
  Problem problem;
};

int line_of(const toml::node& node) { return static_cast<int>(node.source().begin.line); }

std::optional<Located> toml_to_json(const toml::node& node, json& out) {
  switch (node.type()) {
    case toml::node_type::table: {
      out = json::object();
      for (const auto& [key, child] : *node.as_table()) {
        if (auto p = toml_to_json(child, out[std::string(key.str())])) return p;
      }
      return std::nullopt;
    }
    case toml::node_type::array: {
      out = json::array();
      for (const auto& child : *node.as_array()) {
        json v;
        if (auto p = toml_to_json(child, v)) return p;
        out.push_back(std::move(v));
      }
      return std::nullopt;
    }
    case toml::node_type::string:
      out = node.as_string()->get();
      return std::nullopt;
    case toml::node_type::integer:
      out = node.as_integer()->get();
      return std::nullopt;
    case toml::node_type::floating_point: {
      const double v = node.as_floating_point()->get();
      if (!std::isfinite(v)) return Located{line_of(node), {"payload", "nan and inf have no JSON form"}};
      out = v;
      return std::nullopt;
    }
    case toml::node_type::boolean:
      out = node.as_boolean()->get();
      return std::nullopt;
    case toml::node_type::date:
      out = rfc3339(node.as_date()->get());
      return std::nullopt;
    case toml::node_type::time:
      out = rfc3339(node.as_time()->get());
      return std::nullopt;
    case toml::node_type::date_time:
      out = rfc3339(node.as_date_time()->get());
      return std::nullopt;
    case toml::node_type::none:
      break;
  }
  return Located{line_of(node), {"payload", "has a value of no known type"}};
}

// Reads one [[schedule]] table into a spec; problems carry the line of their key.
class SpecReader {
 public:
  SpecReader(const toml::table& table, ScheduleSpec& spec) : table_(table), spec_(spec) {}

  std::optional<Located> string(const char* key, std::string& out) {
    const toml::node* node = table_.get(key);
    if (node == nullptr) return std::nullopt;
    if (!node->is_string()) return at(*node, key, "must be a string");
    out = node->as_string()->get();
    return std::nullopt;
  }

  std::optional<Located> integer(const char* key, int& out, int lo, int hi) {
    const toml::node* node = table_.get(key);
    if (node == nullptr) return std::nullopt;
    if (!node->is_integer()) return at(*node, key, "must be an integer");
    const int64_t v = node->as_integer()->get();
    if (v < lo || v > hi) {
      return at(*node, key, "must be between " + std::to_string(lo) + " and " + std::to_string(hi));
    }
    out = static_cast<int>(v);
    return std::nullopt;
  }

  // A duration string ("30s") or integer milliseconds, as everywhere in ripen's config.
  std::optional<Located> duration(const char* key, int64_t& out) {
    const toml::node* node = table_.get(key);
    if (node == nullptr) return std::nullopt;
    int64_t v = 0;
    if (node->is_integer()) {
      v = node->as_integer()->get();
    } else if (node->is_string()) {
      auto d = parse_duration_ms(node->as_string()->get());
      if (!d) return at(*node, key, d.error().message);
      v = *d;
    } else {
      return at(*node, key, "must be a duration like \"30s\" or integer milliseconds");
    }
    if (v < 1 || v > kMaxTimeoutMs) {
      return at(*node, key, "must be between 1 ms and " + std::to_string(kMaxTimeoutMs) + " ms (7 days)");
    }
    out = v;
    return std::nullopt;
  }

  std::optional<Located> payload() {
    const toml::node* node = table_.get("payload");
    if (node == nullptr) return std::nullopt;
    return toml_to_json(*node, spec_.payload);
  }

  std::optional<Located> unknown_keys() const {
    for (const auto& [key, node] : table_) {
      if (std::find(kFileKeys.begin(), kFileKeys.end(), key.str()) == kFileKeys.end()) {
        return Located{line_of(node), {std::string(key.str()), "unknown key"}};
      }
    }
    return std::nullopt;
  }

  // The line of `key` in the table, or of the table itself when it is absent.
  int line(const std::string& key) const {
    const toml::node* node = table_.get(key);
    return node != nullptr ? line_of(*node) : spec_.line;
  }

 private:
  static Located at(const toml::node& node, const char* key, std::string reason) {
    return Located{line_of(node), {key, std::move(reason)}};
  }

  const toml::table& table_;
  ScheduleSpec& spec_;
};

Error file_error(std::string_view source, int line, const std::string& schedule, const Problem& p) {
  std::string out(source);
  if (line > 0) out += ":" + std::to_string(line);
  return make_error(Errc::invalid, out + ": " + schedule + ": " + p.key + ": " + p.reason);
}

Result<ScheduleSpec> read_schedule(const toml::table& table, std::string_view source, int index) {
  ScheduleSpec s;
  s.line = line_of(table);
  SpecReader r(table, s);
  // The name first, so that every later message can say which schedule it is.
  if (auto p = r.string("name", s.name)) return file_error(source, p->line, who("", index), p->problem);
  const std::string me = who(s.name, index);
  if (auto p = r.unknown_keys()) return file_error(source, p->line, me, p->problem);
  std::optional<Located> p;
  if (!p) p = r.string("cron", s.cron);
  if (!p) p = r.string("timezone", s.timezone);
  if (!p) p = r.string("queue", s.queue);
  if (!p) p = r.string("type", s.type);
  if (!p) p = r.payload();
  if (!p) p = r.string("overlap", s.overlap);
  if (!p) p = r.string("misfire", s.misfire);
  if (!p) p = r.integer("misfire_limit", s.misfire_limit, 1, kMaxMisfireLimit);
  if (!p) p = r.integer("max_attempts", s.max_attempts, 1, kMaxAttempts);
  if (!p) p = r.duration("timeout", s.timeout_ms);
  if (!p) p = r.string("downstream", s.downstream);
  if (!p) p = r.integer("priority", s.priority, 0, 9);
  if (p) return file_error(source, p->line, me, p->problem);
  // A required key that is missing would read as "" above; say so plainly.
  for (const char* key : {"name", "cron", "queue", "type"}) {
    if (!table.contains(key)) return file_error(source, s.line, me, {key, "is required"});
  }
  if (auto problem = check(s, kDefaultMaxEnvelopeBytes)) {
    return file_error(source, r.line(problem->key), me, *problem);
  }
  return s;
}

}  // namespace

// ---- ScheduleSpec ---------------------------------------------------------------

Envelope ScheduleSpec::task() const {
  Envelope env;
  env.queue = queue;
  env.type = type;
  env.payload = payload;
  env.downstream = downstream;
  env.max_attempts = max_attempts;
  env.timeout_ms = timeout_ms;
  env.priority = priority;
  return env;
}

json ScheduleSpec::to_json() const {
  return json{{"name", name},
              {"cron", cron},
              {"timezone", timezone},
              {"queue", queue},
              {"type", type},
              {"payload", payload},
              {"overlap", overlap},
              {"misfire", misfire},
              {"misfire_limit", misfire_limit},
              {"max_attempts", max_attempts},
              {"timeout_ms", timeout_ms},
              {"downstream", downstream},
              {"priority", priority}};
}

Result<ScheduleSpec> ScheduleSpec::from_json(const json& doc) {
  if (!doc.is_object()) return make_error(Errc::invalid, "schedule: must be a JSON object");
  ScheduleSpec s;
  if (doc.contains("name") && doc["name"].is_string()) s.name = doc["name"].get<std::string>();
  const std::string me = who(s.name, 0);
  auto fail = [&](const std::string& key, const std::string& reason) {
    return make_error(Errc::invalid, me + ": " + key + ": " + reason);
  };
  static constexpr std::array<std::string_view, 13> kJsonKeys = {
      "name",    "cron",          "timezone",     "queue",      "type",       "payload", "overlap",
      "misfire", "misfire_limit", "max_attempts", "timeout_ms", "downstream", "priority"};
  for (const auto& item : doc.items()) {
    if (std::find(kJsonKeys.begin(), kJsonKeys.end(), item.key()) == kJsonKeys.end()) {
      return fail(item.key(), "unknown key");
    }
  }
  for (const char* key : {"name", "cron", "queue", "type"}) {
    if (!doc.contains(key)) return fail(key, "is required");
  }
  for (auto [key, out] : std::initializer_list<std::pair<const char*, std::string*>>{{"name", &s.name},
                                                                                     {"cron", &s.cron},
                                                                                     {"timezone", &s.timezone},
                                                                                     {"queue", &s.queue},
                                                                                     {"type", &s.type},
                                                                                     {"overlap", &s.overlap},
                                                                                     {"misfire", &s.misfire},
                                                                                     {"downstream", &s.downstream}}) {
    if (!doc.contains(key)) continue;
    if (!doc[key].is_string()) return fail(key, "must be a string");
    *out = doc[key].get<std::string>();
  }
  // Ranges are validate()'s; here only that the number fits its field.
  for (auto [key, out] : std::initializer_list<std::pair<const char*, int*>>{
           {"misfire_limit", &s.misfire_limit}, {"max_attempts", &s.max_attempts}, {"priority", &s.priority}}) {
    if (!doc.contains(key)) continue;
    const json& v = doc[key];
    if (!v.is_number_integer()) return fail(key, "must be an integer");
    if (v.is_number_unsigned() ? v.get<uint64_t>() > uint64_t{std::numeric_limits<int>::max()}
                               : (v.get<int64_t>() < std::numeric_limits<int>::min() ||
                                  v.get<int64_t>() > std::numeric_limits<int>::max())) {
      return fail(key, "is out of range");
    }
    *out = static_cast<int>(v.get<int64_t>());
  }
  if (doc.contains("timeout_ms")) {
    const json& v = doc["timeout_ms"];
    if (!v.is_number_integer() || (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t{INT64_MAX})) {
      return fail("timeout_ms", "must be an integer");
    }
    s.timeout_ms = v.get<int64_t>();
  }
  if (doc.contains("payload")) s.payload = doc["payload"];
  if (auto st = s.validate(); !st) return st.error();
  return s;
}

Status ScheduleSpec::validate(size_t max_envelope_bytes) const {
  if (auto p = check(*this, max_envelope_bytes)) {
    return make_error(Errc::invalid, who(name, 0) + ": " + p->key + ": " + p->reason);
  }
  return {};
}

// ---- files ----------------------------------------------------------------------

Result<std::vector<ScheduleSpec>> parse_schedules(std::string_view toml_text, std::string_view source_name) {
  toml::table root;
  try {
    root = toml::parse(toml_text, source_name);
  } catch (const toml::parse_error& e) {
    return make_error(Errc::invalid, std::string(source_name) + ":" + std::to_string(e.source().begin.line) + ": " +
                                         std::string(e.description()));
  }
  const std::string source(source_name);
  for (const auto& [key, node] : root) {
    if (key.str() != "schedule") {
      return make_error(Errc::invalid, source + ":" + std::to_string(line_of(node)) + ": unknown key '" +
                                           std::string(key.str()) +
                                           "' (a schedules file holds only [[schedule]] tables)");
    }
  }
  std::vector<ScheduleSpec> specs;
  const toml::node* node = root.get("schedule");
  if (node == nullptr) return specs;
  const toml::array* list = node->as_array();
  if (list == nullptr) {
    return make_error(Errc::invalid, source + ":" + std::to_string(line_of(*node)) +
                                         ": key 'schedule': must be an array of tables ([[schedule]])");
  }
  std::map<std::string, int> first_line;  // name -> line of its [[schedule]]
  int index = 0;
  for (const toml::node& item : *list) {
    ++index;
    const toml::table* table = item.as_table();
    if (table == nullptr) {
      return make_error(Errc::invalid, source + ":" + std::to_string(line_of(item)) + ": schedule #" +
                                           std::to_string(index) + ": must be a table ([[schedule]])");
    }
    auto spec = read_schedule(*table, source, index);
    if (!spec) return spec.error();
    if (auto [it, added] = first_line.emplace(spec->name, spec->line); !added) {
      return file_error(source, line_of(*table->get("name")), who(spec->name, index),
                        {"name", "used twice: also by the schedule at line " + std::to_string(it->second)});
    }
    specs.push_back(std::move(*spec));
  }
  return specs;
}

Result<std::vector<ScheduleSpec>> load_schedules_file(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return make_error(Errc::not_found, "schedules file '" + path + "': does not exist");
  }
  if (!std::filesystem::is_regular_file(path, ec)) {
    return make_error(Errc::invalid, "schedules file '" + path + "': not a regular file");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(Errc::invalid, "schedules file '" + path + "': cannot be read");
  std::stringstream buf;
  buf << in.rdbuf();
  if (in.bad()) return make_error(Errc::invalid, "schedules file '" + path + "': cannot be read");
  return parse_schedules(buf.str(), path);
}

}  // namespace ripen
