#include "ripen/stored_task.h"

#include <algorithm>
#include <charconv>

#include <openssl/sha.h>
#include <nlohmann/json.hpp>

#include "ripen/topology.h"  // kMaxPriority
#include "ripen/untrusted.h"

namespace ripen {
namespace {

template <class T>
bool parse_number(std::string_view s, T& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

std::vector<std::string_view> split_fields(std::string_view packed, size_t max_fields) {
  std::vector<std::string_view> out;
  out.reserve(max_fields);
  while (out.size() + 1 < max_fields) {
    const size_t at = packed.find(kSep);
    if (at == std::string_view::npos) break;
    out.push_back(packed.substr(0, at));
    packed.remove_prefix(at + 1);
  }
  out.push_back(packed);
  return out;
}

std::string field_safe(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\n' && c != '\t') || u == 0x7f) c = ' ';
  }
  return out;
}

namespace {

// The optional envelope members, as JSON object members without the braces.
std::string extra_members(const Envelope& task) {
  if (task.downstream.empty() && task.timeout_ms == 0 && task.priority == 0 && task.headers.empty()) return {};
  nlohmann::json extra = nlohmann::json::object();
  if (!task.downstream.empty()) extra["downstream"] = task.downstream;
  if (task.timeout_ms != 0) extra["timeout_ms"] = task.timeout_ms;
  if (task.priority != 0) extra["priority"] = task.priority;
  if (!task.headers.empty()) extra["headers"] = task.headers;
  if (extra.empty()) return {};
  const std::string members = extra.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return members.substr(1, members.size() - 2);
}

}  // namespace

int stored_priority(const StoredTask& task) {
  if (task.extra.find("\"priority\"") == std::string_view::npos) return 0;
  std::string doc;
  doc.reserve(task.extra.size() + 2);
  doc.append("{").append(task.extra).append("}");
  const auto parsed = parse_json_bounded(doc);
  if (!parsed) return 0;
  const nlohmann::json& extra = *parsed;
  const auto it = extra.is_object() ? extra.find("priority") : extra.end();
  if (it == extra.end() || !it->is_number_integer()) return 0;
  return std::clamp(it->get<int>(), 0, kMaxPriority);
}

std::string pack_task_head(const Envelope& task) {
  std::string out(kFormat);
  out.push_back(kSep);
  out.append(std::to_string(task.max_attempts)).push_back(kSep);
  out.append(std::to_string(task.created_ms)).push_back(kSep);
  out.append(task.queue).push_back(kSep);
  out.append(task.type).push_back(kSep);
  out.append(task.idempotency_key).push_back(kSep);
  out.append(extra_members(task));
  return out;
}

std::string encode_payload(const nlohmann::json& payload) {
  return payload.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string payload_digest(std::string_view payload_json) {
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(payload_json.data()), payload_json.size(), digest);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(2 * SHA_DIGEST_LENGTH, '0');
  for (size_t i = 0; i < SHA_DIGEST_LENGTH; ++i) {
    out[2 * i] = kHex[digest[i] >> 4];
    out[2 * i + 1] = kHex[digest[i] & 0xf];
  }
  return out;
}

std::string pack_task_tail(const Envelope& task) { return pack_task_tail(task, encode_payload(task.payload)); }

std::string pack_task_tail(const Envelope& task, std::string_view payload) {
  const std::string members = extra_members(task);
  std::string out;
  out.reserve(task.queue.size() + task.type.size() + task.idempotency_key.size() + members.size() + payload.size() + 4);
  out.append(task.queue).push_back(kSep);
  out.append(task.type).push_back(kSep);
  out.append(task.idempotency_key).push_back(kSep);  // validated: no control characters
  out.append(members).push_back(kSep);
  out.append(payload);
  return out;
}

std::string pack_task(const Envelope& task, int64_t created_ms) {
  std::string out(kFormat);
  out.push_back(kSep);
  out.append(std::to_string(task.max_attempts)).push_back(kSep);
  out.append(std::to_string(created_ms)).push_back(kSep);
  out.append(pack_task_tail(task));
  return out;
}

namespace {

// The record without its format marker, and whether it had the current one. A
// record without a marker is v1.
std::string_view unmarked(std::string_view packed, bool& current) {
  current =
      packed.size() > kFormat.size() && packed.substr(0, kFormat.size()) == kFormat && packed[kFormat.size()] == kSep;
  return current ? packed.substr(kFormat.size() + 1) : packed;
}

}  // namespace

std::optional<StoredStatus> parse_stored_status(std::string_view packed) {
  bool v2 = false;
  const std::string_view fields = unmarked(packed, v2);
  const auto f = split_fields(fields, v2 ? 9 : 8);
  if (f.size() != (v2 ? 9u : 8u)) return std::nullopt;
  StoredStatus s;
  s.state = f[0];
  if (!f[1].empty() && !parse_number(f[1], s.attempts)) return std::nullopt;
  s.due = f[2];
  s.dispatched = f[3];
  s.started = f[4];
  s.finished = f[5];
  s.runner = f[6];
  if (v2) s.lease_until = f[7];
  s.last_error = f[v2 ? 8 : 7];
  return s;
}

std::optional<StoredEnded> parse_stored_ended(std::string_view packed) {
  // STATUS fields, then the head. last_error cannot hold a separator
  // (field_safe), so the STATUS ends at its last field's separator.
  bool v2 = false;
  (void)unmarked(packed, v2);
  const size_t fields = v2 ? 10 : 8;
  size_t at = 0;
  for (size_t i = 0; i < fields; ++i) {
    at = packed.find(kSep, i == 0 ? 0 : at + 1);
    if (at == std::string_view::npos) return std::nullopt;
  }
  auto status = parse_stored_status(packed.substr(0, at));
  if (!status) return std::nullopt;
  return StoredEnded{*status, packed.substr(at + 1)};
}

std::optional<StoredTask> parse_stored_task(std::string_view packed) {
  bool v2 = false;
  const std::string_view fields = unmarked(packed, v2);
  const auto f = split_fields(fields, 7);
  if (f.size() != 7) return std::nullopt;
  StoredTask t;
  if (!parse_number(f[0], t.max_attempts) || !parse_number(f[1], t.created_ms)) return std::nullopt;
  t.queue = f[2];
  t.type = f[3];
  t.idempotency_key = f[4];
  t.extra = f[5];
  t.payload = f[6];
  return t;
}

std::string envelope_json(std::string_view id, const StoredTask& t) {
  // id, queue and type were validated to name characters, so they need no escaping.
  std::string out;
  out.reserve(96 + id.size() + t.queue.size() + t.type.size() + t.idempotency_key.size() + t.extra.size() +
              t.payload.size());
  out.append(R"({"v":1,"id":")").append(id);
  out.append(R"(","queue":")").append(t.queue);
  out.append(R"(","type":")").append(t.type).append("\"");
  if (!t.idempotency_key.empty()) {
    out.append(R"(,"idempotency_key":)")
        .append(nlohmann::json(std::string(t.idempotency_key))
                    .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  }
  if (!t.extra.empty()) out.append(",").append(t.extra);
  out.append(R"(,"max_attempts":)").append(std::to_string(t.max_attempts));
  out.append(R"(,"created_ms":)").append(std::to_string(t.created_ms));
  out.append(R"(,"payload":)").append(t.payload.empty() ? std::string_view("null") : t.payload);
  out.append("}");
  return out;
}

}  // namespace ripen
