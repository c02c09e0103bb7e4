#include "ripen/ids.h"

#include <random>

namespace ripen {
namespace {

constexpr std::string_view kCrockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

std::mt19937_64& rng() {
  thread_local std::mt19937_64 engine{std::random_device{}()};
  return engine;
}

}  // namespace

std::string new_ulid(int64_t epoch_ms) {
  // 10 digits of time (48 bits, the top two of 50 always zero), then 16 digits of
  // randomness (80 bits).
  std::string out(26, '0');
  auto t = static_cast<uint64_t>(epoch_ms) & ((1ULL << 48) - 1);
  for (int i = 9; i >= 0; --i) {
    out[static_cast<size_t>(i)] = kCrockford[t & 31];
    t >>= 5;
  }
  uint64_t hi = rng()() & 0xFFFFFFFFFFULL;  // 40 bits -> 8 digits
  uint64_t lo = rng()() & 0xFFFFFFFFFFULL;  // 40 bits -> 8 digits
  for (int i = 17; i >= 10; --i) {
    out[static_cast<size_t>(i)] = kCrockford[hi & 31];
    hi >>= 5;
  }
  for (int i = 25; i >= 18; --i) {
    out[static_cast<size_t>(i)] = kCrockford[lo & 31];
    lo >>= 5;
  }
  return out;
}

std::string new_task_id(int64_t epoch_ms) {
  static constexpr std::string_view kBase62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  std::string out(kTaskIdLength, '0');
  // 62^8 ms is about 6,900 years: the time prefix never wraps in practice.
  auto t = static_cast<uint64_t>(epoch_ms);
  for (int i = 7; i >= 0; --i) {
    out[static_cast<size_t>(i)] = kBase62[t % 62];
    t /= 62;
  }
  uint64_t r = rng()();
  for (size_t i = 8; i < kTaskIdLength; ++i) {
    out[i] = kBase62[r % 62];
    r /= 62;
  }
  return out;
}

std::string new_task_id_in_shard(const Keys& keys, int shard, int64_t epoch_ms) {
  for (;;) {
    std::string id = new_task_id(epoch_ms);
    if (keys.shard_of(id) == shard) return id;
  }
}

bool is_valid_task_id(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    const bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

}  // namespace ripen
