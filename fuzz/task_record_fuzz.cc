// The packed records a task is kept in (stored_task.h): read back from Redis by
// the dispatcher, the worker and the CLI. A TASK that parses gives the envelope
// JSON a worker receives; decoding that must not crash either.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "ripen/envelope.h"
#include "ripen/stored_task.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view packed(reinterpret_cast<const char*>(data), size);
  if (auto task = ripen::parse_stored_task(packed)) {
    (void)ripen::stored_priority(*task);
    (void)ripen::decode_message(ripen::envelope_json("fuzz-id", *task), ripen::kDefaultMaxEnvelopeBytes);
  }
  (void)ripen::parse_stored_status(packed);
  (void)ripen::parse_stored_ended(packed);
  (void)ripen::split_fields(packed, 10);
  (void)ripen::field_safe(packed);
  return 0;
}
