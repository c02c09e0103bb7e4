// Redis and AMQP URLs, from config files, the environment and flags.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "ripen/amqp.h"
#include "ripen/redis.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto r = ripen::parse_redis_url(text)) {
    if (r->port <= 0 || r->port > 65535 || r->db < 0) std::abort();
    (void)r->redacted();
  }
  if (auto a = ripen::parse_amqp_url(text)) (void)a->redacted();
  return 0;
}
