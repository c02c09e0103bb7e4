// How a task is kept in Redis: packed strings whose fields are separated by
// kSep (0x1f, ASCII "unit separator"). Lua (shared/src/scripts.cc) and this file
// are the only two places that read or write them; keep them in step.
//
// Why packed strings and not a hash per task: a pending task must cost little
// memory (the wheel holds millions). A Redis hash with a field over 64 bytes is a
// full hashtable, ~1.2 KB per task; one field in a per-shard hash plus its place
// in the due set is ~330 bytes with a 100-byte payload.
//
// Records carry a format version as their first field ("v2"). A record without
// one is format v1, written before versions existed; readers (this file and the
// Lua prelude) read both, and writers always write the current one, so a v1
// STATUS is upgraded the next time its task moves, and a v1 TASK stays until
// its task ends. The rule for a later format is the same: read the old, write
// the new, and keep the reader of the old until no record of it can be left.
//
//   TASK    <ns>:{sN}:tasks[id]   written once at enqueue, gone when the task ends
//           v2 | max_attempts | created_ms | queue | type | idempotency_key | extra | payload
//           (v1: the same without the marker)
//           extra: the optional envelope members (downstream, timeout_ms, priority,
//           headers) as JSON object members without the braces, or empty.
//           payload: JSON text (JSON escapes control characters, so it never holds kSep).
//   STATUS  <ns>:{sN}:status[id]  from the first claim until the task ends; while
//           absent the task is scheduled, attempts 0, due = its score in the due set
//           v2 | state | attempts | due_ms | dispatched_ms | started_ms | finished_ms | worker#run |
//           lease_until | last_error
//           (v1: no marker and no lease_until.) state is a TaskState (lifecycle.h);
//           lease_until, while running, is when the run's lease ends. A claim writes
//           state `dispatched` and dispatched_ms as it takes the task to publish; while
//           the task is still in the in-flight set (its confirm not yet settled)
//           readers show it as waiting (task_record.cc).
//   ENDED   <ns>:{sN}:ended:<w>:<n>[id]  once it ended, in a bucket of records kept for
//           record_retention (keys.h)
//           STATUS | TASK head (the TASK without its payload; empty if it was gone)
//
// Stamps are epoch ms by Redis TIME; an empty field is "not yet".
#pragma once

#include <concepts>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ripen/envelope.h"

namespace ripen {

inline constexpr char kSep = '\x1f';

// The TASK fields after created_ms, as the producer sends them; the enqueue script
// puts max_attempts and Redis's own created_ms in front.
std::string pack_task_tail(const Envelope& task);
// The same, with the payload already encoded (compact JSON).
std::string pack_task_tail(const Envelope& task, std::string_view payload_json);
// A payload as the TASK stores it: compact JSON, invalid UTF-8 replaced. What
// this returns parses back to a value it encodes to again, byte for byte (a
// worker's start compares the digest of the payload it was sent with the stored one's).
std::string encode_payload(const nlohmann::json& payload);
// The SHA-1 of an encoded payload, 40 lowercase hex digits (as Redis's
// redis.sha1hex() computes it in start.lua).
std::string payload_digest(std::string_view payload_json);

// The marker of the current record format.
inline constexpr std::string_view kFormat = "v2";

// The TASK fields but the payload (v2 | max_attempts | created_ms | queue | type |
// idempotency_key | extra), from an envelope that came out of envelope_json():
// what a worker hands back so that ending a task need not read its TASK.
std::string pack_task_head(const Envelope& task);
// A whole TASK as the enqueue script would store it, created now (for tests and tools).
std::string pack_task(const Envelope& task, int64_t created_ms);

// A TASK as stored, viewing into the string it was parsed from.
struct StoredTask {
  int max_attempts = 0;
  int64_t created_ms = 0;
  std::string_view queue, type, idempotency_key, extra, payload;
};
// A TASK (or a TASK head followed by a separator and an empty payload), v2 or v1.
std::optional<StoredTask> parse_stored_task(std::string_view packed);
// Its priority (0..9; 0 when its extras name none), read without parsing the
// extras unless they name one (most tasks have none).
int stored_priority(const StoredTask& task);
// The parsers' results view into their argument: a temporary string would leave
// them dangling, so one does not compile.
template <std::same_as<std::string> S>
std::optional<StoredTask> parse_stored_task(S&&) = delete;

// A STATUS as stored, v2 or v1, viewing into the string it was parsed from.
struct StoredStatus {
  std::string_view state;  // a TaskState's name
  int attempts = 0;
  std::string_view due, dispatched, started, finished, runner, lease_until, last_error;  // '' = not yet
};
std::optional<StoredStatus> parse_stored_status(std::string_view packed);
template <std::same_as<std::string> S>
std::optional<StoredStatus> parse_stored_status(S&&) = delete;

// An ENDED record: its STATUS and its TASK head ('' when none was kept).
struct StoredEnded {
  StoredStatus status;
  std::string_view head;
};
std::optional<StoredEnded> parse_stored_ended(std::string_view packed);
template <std::same_as<std::string> S>
std::optional<StoredEnded> parse_stored_ended(S&&) = delete;

// The envelope JSON a worker receives, assembled from a stored task without
// parsing or re-encoding its payload.
std::string envelope_json(std::string_view id, const StoredTask& task);

// Splits `packed` at kSep into at most `max_fields` fields (the last takes the rest).
std::vector<std::string_view> split_fields(std::string_view packed, size_t max_fields);

// `text` with kSep (and other control characters but tab and newline) replaced by
// spaces, so free text such as an error message can be stored in a field.
std::string field_safe(std::string_view text);

}  // namespace ripen
