// The http handler's payload: what any enqueuer writes, checked before anything
// is sent (check_http_payload), and the downstream named after its URL.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "ripen/http_handler.h"
#include "ripen/untrusted.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto payload = ripen::parse_json_bounded(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!payload) return 0;
  (void)ripen::check_http_payload(*payload);
  (void)ripen::http_downstream(*payload);
  return 0;
}
