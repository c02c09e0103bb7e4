#include "ripen/envelope.h"

#include <algorithm>
#include <array>
#include <limits>

#include "ripen/ids.h"
#include "ripen/untrusted.h"

namespace ripen {
namespace {

using nlohmann::json;

Error field_error(std::string_view field, std::string_view what) {
  // The field's name may be an unknown one from the wire, of any length.
  return make_error(Errc::invalid, "field " + quote_short(field) + ": " + std::string(what));
}

bool is_name_char(char c, std::string_view extra) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         extra.find(c) != std::string_view::npos;
}

bool is_name(std::string_view s, std::string_view extra) {
  return !s.empty() && s.size() <= 128 &&
         std::all_of(s.begin(), s.end(), [&](char c) { return is_name_char(c, extra); });
}

constexpr std::string_view kQueueChars = "._-";
constexpr std::string_view kTypeChars = "._:-";

constexpr std::array<std::string_view, 15> kKnownFields = {
    "v",          "id",           "queue",   "type",       "payload",  "due_ms",     "delay_ms", "idempotency_key",
    "downstream", "max_attempts", "attempt", "timeout_ms", "priority", "created_ms", "headers"};

// Reads an integer field in [lo, hi]. JSON floats, strings and out-of-range values
// are refused rather than rounded or clamped: a wrong due time must not slip by.
Result<int64_t> read_int(const json& doc, std::string_view field, int64_t lo, int64_t hi) {
  const json& v = doc.at(std::string(field));
  if (!v.is_number_integer()) return field_error(field, "must be an integer");
  int64_t n = 0;
  if (v.is_number_unsigned()) {
    const auto u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return field_error(field, "must be at most " + std::to_string(hi));
    }
    n = static_cast<int64_t>(u);
  } else {
    n = v.get<int64_t>();
  }
  if (n < lo) return field_error(field, "must be at least " + std::to_string(lo));
  if (n > hi) return field_error(field, "must be at most " + std::to_string(hi));
  return n;
}

Result<std::string> read_string(const json& doc, std::string_view field) {
  const json& v = doc.at(std::string(field));
  if (!v.is_string()) return field_error(field, "must be a string");
  return v.get<std::string>();
}

constexpr int64_t kMaxEpochMs = 253402300799999;  // 9999-12-31T23:59:59.999Z
constexpr int64_t kMaxDelayMs = 10LL * 365 * 24 * 3600 * 1000;
constexpr int64_t kMaxTimeoutMs = 7LL * 24 * 3600 * 1000;

// Every rule but the size limit.
Status validate_fields(const Envelope& env) {
  if (env.v != kEnvelopeVersion) {
    return field_error("v", "unsupported envelope version " + std::to_string(env.v) + " (this ripen reads " +
                                std::to_string(kEnvelopeVersion) + ")");
  }
  if (!env.id.empty() && !is_valid_task_id(env.id)) {
    return field_error("id", "must be 1-64 characters of [A-Za-z0-9_-]");
  }
  if (env.queue.empty()) return field_error("queue", "is required");
  if (!is_name(env.queue, kQueueChars)) return field_error("queue", "must be 1-128 characters of [A-Za-z0-9._-]");
  if (env.type.empty()) return field_error("type", "is required");
  if (!is_name(env.type, kTypeChars)) return field_error("type", "must be 1-128 characters of [A-Za-z0-9._:-]");
  if (env.due_ms && env.delay_ms) return field_error("due_ms", "give either due_ms or delay_ms, not both");
  if (env.due_ms && (*env.due_ms < 0 || *env.due_ms > kMaxEpochMs)) {
    return field_error("due_ms", "must be epoch milliseconds between 0 and " + std::to_string(kMaxEpochMs));
  }
  if (env.delay_ms && (*env.delay_ms < 0 || *env.delay_ms > kMaxDelayMs)) {
    return field_error("delay_ms", "must be between 0 and " + std::to_string(kMaxDelayMs) + " (10 years)");
  }
  if (env.idempotency_key.size() > 256) return field_error("idempotency_key", "must be at most 256 bytes");
  if (std::any_of(env.idempotency_key.begin(), env.idempotency_key.end(),
                  [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; })) {
    return field_error("idempotency_key", "must not contain control characters");
  }
  if (!env.downstream.empty() && !is_downstream_name(env.downstream)) {
    return field_error("downstream", "must be 1-128 characters of [A-Za-z0-9._:-]");
  }
  if (env.max_attempts < 0 || env.max_attempts > 1000) return field_error("max_attempts", "must be between 1 and 1000");
  if (env.attempt < 0 || env.attempt > 1000) return field_error("attempt", "must be between 0 and 1000");
  if (env.timeout_ms < 0 || env.timeout_ms > kMaxTimeoutMs) {
    return field_error("timeout_ms", "must be between 0 and " + std::to_string(kMaxTimeoutMs) + " (7 days)");
  }
  if (env.priority < 0 || env.priority > 9) return field_error("priority", "must be between 0 and 9");
  if (env.created_ms < 0) return field_error("created_ms", "must not be negative");
  for (const auto& [k, v] : env.headers) {
    if (k.empty() || k.size() > 128) return field_error("headers", "names must be 1-128 bytes");
    if (v.size() > 4096) return field_error("headers", "value of " + quote_short(k) + " is over 4096 bytes");
  }
  return {};
}

// A payload built in code that nests deeper than a decoder accepts would be
// stored, then refused by every worker: refused here instead. `encoded` is the
// whole envelope's JSON (max_depth kMaxJsonDepth) or the payload's alone
// (kMaxJsonDepth - 1, the envelope object being the level above it).
Status check_payload_depth(std::string_view encoded, int max_depth) {
  if (json_too_deep_at(encoded, max_depth) == std::string_view::npos) return {};
  return field_error("payload",
                     "nested deeper than " + std::to_string(kMaxJsonDepth) + " levels, the envelope object included");
}

}  // namespace

bool is_downstream_name(std::string_view name) { return is_name(name, kTypeChars); }
bool is_queue_name(std::string_view name) { return is_name(name, kQueueChars); }
Status check_queue_name(std::string_view name) {
  if (is_queue_name(name)) return {};
  return make_error(Errc::invalid, "queue " + quote_short(name) + ": must be 1-128 characters of [A-Za-z0-9._-]");
}

Status validate_envelope(const Envelope& env, size_t max_bytes) {
  if (auto st = validate_fields(env); !st) return st;
  const std::string text = encode_envelope(env);
  if (auto st = check_payload_depth(text, kMaxJsonDepth); !st) return st;
  const size_t size = text.size();
  if (size > max_bytes) {
    return make_error(Errc::invalid, "envelope is " + std::to_string(size) + " bytes, over the limit of " +
                                         std::to_string(max_bytes) + " bytes");
  }
  return {};
}

Result<Envelope> envelope_from_json(const json& doc) {
  if (!doc.is_object()) return make_error(Errc::invalid, "envelope must be a JSON object");
  for (const auto& item : doc.items()) {
    if (std::find(kKnownFields.begin(), kKnownFields.end(), item.key()) == kKnownFields.end()) {
      return field_error(item.key(), "unknown field");
    }
  }
  Envelope env;
  if (!doc.contains("v")) return field_error("v", "is required (the envelope version, 1)");
  {
    auto v = read_int(doc, "v", std::numeric_limits<int>::min(), std::numeric_limits<int>::max());
    if (!v) return v.error();
    env.v = static_cast<int>(*v);
    if (env.v != kEnvelopeVersion) {
      return field_error("v", "unsupported envelope version " + std::to_string(env.v) + " (this ripen reads " +
                                  std::to_string(kEnvelopeVersion) + ")");
    }
  }
  auto str = [&](std::string_view field, std::string& out) -> Status {
    if (!doc.contains(std::string(field)) || doc.at(std::string(field)).is_null()) return {};
    auto s = read_string(doc, field);
    if (!s) return s.error();
    out = std::move(*s);
    return {};
  };
  auto integer = [&](std::string_view field, int64_t lo, int64_t hi, auto& out) -> Status {
    if (!doc.contains(std::string(field)) || doc.at(std::string(field)).is_null()) return {};
    auto n = read_int(doc, field, lo, hi);
    if (!n) return n.error();
    out = static_cast<std::remove_reference_t<decltype(out)>>(*n);
    return {};
  };
  if (auto st = str("id", env.id); !st) return st.error();
  if (auto st = str("queue", env.queue); !st) return st.error();
  if (auto st = str("type", env.type); !st) return st.error();
  if (auto st = str("idempotency_key", env.idempotency_key); !st) return st.error();
  if (auto st = str("downstream", env.downstream); !st) return st.error();
  if (doc.contains("payload")) env.payload = doc.at("payload");
  if (doc.contains("due_ms") && !doc.at("due_ms").is_null()) {
    auto n = read_int(doc, "due_ms", 0, kMaxEpochMs);
    if (!n) return n.error();
    env.due_ms = *n;
  }
  if (doc.contains("delay_ms") && !doc.at("delay_ms").is_null()) {
    auto n = read_int(doc, "delay_ms", 0, kMaxDelayMs);
    if (!n) return n.error();
    env.delay_ms = *n;
  }
  if (auto st = integer("max_attempts", 1, 1000, env.max_attempts); !st) return st.error();
  if (auto st = integer("attempt", 0, 1000, env.attempt); !st) return st.error();
  if (auto st = integer("timeout_ms", 0, kMaxTimeoutMs, env.timeout_ms); !st) return st.error();
  if (auto st = integer("priority", 0, 9, env.priority); !st) return st.error();
  if (auto st = integer("created_ms", 0, kMaxEpochMs, env.created_ms); !st) return st.error();
  if (doc.contains("headers") && !doc.at("headers").is_null()) {
    const json& h = doc.at("headers");
    if (!h.is_object()) return field_error("headers", "must be an object of strings");
    for (const auto& item : h.items()) {
      if (!item.value().is_string())
        return field_error("headers", "value of " + quote_short(item.key()) + " must be a string");
      env.headers[item.key()] = item.value().get<std::string>();
    }
  }
  return env;
}

Result<Envelope> decode_envelope(std::string_view text, size_t max_bytes) {
  if (text.size() > max_bytes) {
    return make_error(Errc::invalid, "envelope is " + std::to_string(text.size()) + " bytes, over the limit of " +
                                         std::to_string(max_bytes) + " bytes");
  }
  auto doc = parse_json_bounded(text);
  if (!doc) return make_error(Errc::invalid, "envelope is " + doc.error().message);
  auto env = envelope_from_json(*doc);
  if (!env) return env;
  // The text's own size was checked above; encoding it again only to measure
  // would cost every delivery a worker reads a second JSON dump.
  if (auto st = validate_fields(*env); !st) return st.error();
  return env;
}

std::string encode_bundle(const std::vector<std::string_view>& envelopes) {
  size_t size = 2 + envelopes.size();
  for (auto e : envelopes) size += e.size();
  std::string out;
  out.reserve(size);
  out.push_back('[');
  for (size_t i = 0; i < envelopes.size(); ++i) {
    if (i > 0) out.push_back(',');
    out.append(envelopes[i]);
  }
  out.push_back(']');
  return out;
}

bool is_bundle(std::string_view body) {
  const size_t start = body.find_first_not_of(" \t\r\n");
  return start != std::string_view::npos && body[start] == '[';
}

Result<std::vector<MessageTask>> decode_message(std::string_view body, size_t max_bytes) {
  if (!is_bundle(body)) {
    std::vector<MessageTask> one;
    one.push_back({decode_envelope(body, max_bytes), {}});
    if (!one[0].envelope) one[0].text = std::string(body);
    return one;
  }
  // The most a bundle can be: kMaxBundle elements at the limit, their commas
  // and brackets. Checked before parsing, so a runaway body costs nothing.
  const size_t limit = kMaxBundle * (max_bytes + 1) + 1;
  if (body.size() > limit) {
    return make_error(Errc::invalid, "bundle is " + std::to_string(body.size()) + " bytes, over the limit of " +
                                         std::to_string(limit) + " bytes");
  }
  // One level more than an envelope alone: the bundle's array. An element that
  // would pass alone passes in a bundle.
  auto parsed = parse_json_bounded(body, kMaxJsonDepth + 1);
  if (!parsed) return make_error(Errc::invalid, "bundle is " + parsed.error().message);
  json& doc = *parsed;
  if (doc.empty() || doc.size() > kMaxBundle) {
    return make_error(Errc::invalid, "bundle must hold 1-" + std::to_string(kMaxBundle) + " envelopes");
  }
  std::vector<MessageTask> tasks;
  tasks.reserve(doc.size());
  for (auto& element : doc) {
    auto env = envelope_from_json(element);
    if (env) {
      if (auto st = validate_fields(*env); !st) env = st.error();
    }
    std::string text;
    if (!env) text = element.dump(-1, ' ', false, json::error_handler_t::replace);
    tasks.push_back({std::move(env), std::move(text)});
  }
  return tasks;
}

namespace {

// The envelope as a JSON document; its payload null when `with_payload` is false.
json envelope_doc(const Envelope& env, bool with_payload) {
  json doc = json::object();
  doc["v"] = env.v;
  if (!env.id.empty()) doc["id"] = env.id;
  doc["queue"] = env.queue;
  doc["type"] = env.type;
  doc["payload"] = with_payload ? env.payload : json(nullptr);
  if (env.due_ms) doc["due_ms"] = *env.due_ms;
  if (env.delay_ms) doc["delay_ms"] = *env.delay_ms;
  if (!env.idempotency_key.empty()) doc["idempotency_key"] = env.idempotency_key;
  if (!env.downstream.empty()) doc["downstream"] = env.downstream;
  if (env.max_attempts != 0) doc["max_attempts"] = env.max_attempts;
  if (env.attempt != 0) doc["attempt"] = env.attempt;
  if (env.timeout_ms != 0) doc["timeout_ms"] = env.timeout_ms;
  if (env.priority != 0) doc["priority"] = env.priority;
  if (env.created_ms != 0) doc["created_ms"] = env.created_ms;
  if (!env.headers.empty()) doc["headers"] = env.headers;
  return doc;
}

}  // namespace

json envelope_to_json(const Envelope& env) { return envelope_doc(env, true); }

Status validate_envelope(const Envelope& env, size_t max_bytes, std::string_view payload_json) {
  if (auto st = validate_fields(env); !st) return st;
  // The payload alone, one level below the envelope object.
  if (auto st = check_payload_depth(payload_json, kMaxJsonDepth - 1); !st) return st;
  // The encoding with a null payload, "null" swapped for the payload's text: the
  // size encode_envelope() would give, without encoding the payload again.
  const std::string rest = envelope_doc(env, false).dump(-1, ' ', false, json::error_handler_t::replace);
  const size_t size = rest.size() - 4 + payload_json.size();
  if (size > max_bytes) {
    return make_error(Errc::invalid, "envelope is " + std::to_string(size) + " bytes, over the limit of " +
                                         std::to_string(max_bytes) + " bytes");
  }
  return {};
}

std::string encode_envelope(const Envelope& env) {
  // Invalid UTF-8 in a string is replaced rather than thrown on: validation
  // already reported what it could, and encoding must not crash a worker.
  return envelope_to_json(env).dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace ripen
