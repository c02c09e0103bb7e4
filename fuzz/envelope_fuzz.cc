// The envelope and bundle decoder: every message body from the wire goes
// through decode_message (a worker) or decode_envelope (the ingress). Beyond
// "no crash, no sanitizer report": an envelope that decodes encodes to text that
// decodes to the same envelope.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "ripen/envelope.h"

namespace {

void check_round_trip(const ripen::Envelope& env) {
  const std::string text = ripen::encode_envelope(env);
  // Encoding may lengthen the text (1E2 is written 100.0), so the limit is roomy.
  auto again = ripen::decode_envelope(text, text.size());
  if (!again.ok() || ripen::envelope_to_json(*again) != ripen::envelope_to_json(env)) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  if (auto env = ripen::decode_envelope(body)) check_round_trip(*env);
  if (auto tasks = ripen::decode_message(body, ripen::kDefaultMaxEnvelopeBytes)) {
    if (tasks->empty() || tasks->size() > ripen::kMaxBundle) std::abort();
    for (const auto& t : *tasks) {
      if (t.envelope) check_round_trip(*t.envelope);
    }
  }
  return 0;
}
