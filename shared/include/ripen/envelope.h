// The task envelope: one versioned JSON document, the same whether a task comes
// from the C++ producer, the CLI or the AMQP ingress, and the body of the message a
// worker receives. Schema: shared/envelope.schema.json.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "ripen/result.h"

namespace ripen {

inline constexpr int kEnvelopeVersion = 1;
inline constexpr size_t kDefaultMaxEnvelopeBytes = 256 * 1024;

struct Envelope {
  int v = kEnvelopeVersion;
  std::string id;                   // empty until the producer assigns one
  std::string queue;                // required: [A-Za-z0-9._-]{1,128}
  std::string type;                 // required: [A-Za-z0-9._:-]{1,128}; picks the handler
  nlohmann::json payload;           // any JSON; null when absent
  std::optional<int64_t> due_ms;    // absolute due time, epoch ms (Redis clock)
  std::optional<int64_t> delay_ms;  // or: relative to the enqueue, by Redis clock
  std::string idempotency_key;      // same key while pending, or succeeded within idempotency_retention -> same task
  std::string downstream;           // the service the handler calls, for its circuit breaker
  int max_attempts = 0;             // 0 = the configured default
  int attempt = 0;                  // attempts already made before this delivery
  int64_t timeout_ms = 0;           // 0 = the handler's default
  int priority = 0;                 // 0..9
  int64_t created_ms = 0;           // set by the producer
  std::map<std::string, std::string> headers;
};

// Parse and validate. Every failure names the offending field, e.g.
// "field 'queue': must be 1-128 characters of [A-Za-z0-9._-]".
Result<Envelope> decode_envelope(std::string_view text, size_t max_bytes = kDefaultMaxEnvelopeBytes);
Result<Envelope> envelope_from_json(const nlohmann::json& doc);

// Checks the rules that hold for any envelope, built in code or parsed.
Status validate_envelope(const Envelope& env, size_t max_bytes = kDefaultMaxEnvelopeBytes);
// The same, for a caller that has the payload encoded already (payload_json is
// env.payload's compact JSON): the size limit is checked without encoding the
// payload a second time.
Status validate_envelope(const Envelope& env, size_t max_bytes, std::string_view payload_json);

// A task type or downstream name: 1-128 characters of [A-Za-z0-9._:-].
bool is_downstream_name(std::string_view name);
// A queue name: 1-128 characters of [A-Za-z0-9._-]. check_queue_name says so
// when it is not: "queue 'a b': must be 1-128 characters of [A-Za-z0-9._-]".
bool is_queue_name(std::string_view name);
Status check_queue_name(std::string_view name);

nlohmann::json envelope_to_json(const Envelope& env);
std::string encode_envelope(const Envelope& env);

// A message on a task queue holds one envelope, or a bundle: a JSON array of up
// to kMaxBundle envelopes that the dispatcher published together because they
// ripened together (one broker message, persisted and confirmed once, instead of
// one each). A worker runs a bundle's tasks one by one, as if they had come alone.
inline constexpr size_t kMaxBundle = 1000;

// "[e1,e2,...]" from envelopes already encoded.
// Whether a message body is a bundle (a JSON array) rather than one envelope.
bool is_bundle(std::string_view body);
std::string encode_bundle(const std::vector<std::string_view>& envelopes);

struct MessageTask {
  Result<Envelope> envelope;
  std::string text;  // when the envelope did not decode: its own JSON, for the dead-letter queue
};
// The tasks of a message, each decoded and validated on its own, so one bad
// element of a bundle fails alone. An error for the whole message when it is a
// bundle that does not parse (a single envelope that does not is one failed task).
Result<std::vector<MessageTask>> decode_message(std::string_view body, size_t max_envelope_bytes);

}  // namespace ripen
