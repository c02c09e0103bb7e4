// Task ids: 26-character ULIDs (Crockford base32; 48-bit epoch ms + 80 random bits),
// so ids sort by creation time and are safe in Redis keys and AMQP headers.
#pragma once

#include <cstdint>
#include <string>

#include "ripen/keys.h"

namespace ripen {

std::string new_ulid(int64_t epoch_ms);

// A task id: 14 characters of base62 (0-9A-Za-z, in ASCII order): 8 for the
// creation time in ms, so ids sort by time, then 6 random ones (35.7 bits).
// 14, because an id is stored twice per pending task (its due-set member and its
// TASK field) and Redis keeps a string of up to 14 bytes in a 16-byte
// allocation, 15 or more in 32: the length alone is 32 bytes per pending task.
// Two ids drawn in the same millisecond clash about once in 2^35; the enqueue
// script reports it and the producer draws again.
inline constexpr size_t kTaskIdLength = 14;
std::string new_task_id(int64_t epoch_ms);

// A fresh task id that lands in `shard` (see keys.h: an idempotent task's id shares its
// key's shard). Expected `keys.shards()` draws; each draw is a hash of 26 bytes.
std::string new_task_id_in_shard(const Keys& keys, int shard, int64_t epoch_ms);

bool is_valid_task_id(const std::string& id);

}  // namespace ripen
