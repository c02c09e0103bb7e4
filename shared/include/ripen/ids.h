// Task ids: 26-character ULIDs (Crockford base32; 48-bit epoch ms + 80 random bits),
// so ids sort by creation time and are safe in Redis keys and AMQP headers.
#pragma once

#include <cstdint>
#include <string>

#include "ripen/keys.h"

namespace ripen {

std::string new_ulid(int64_t epoch_ms);

// A fresh id that lands in `shard` (see keys.h: an idempotent task's id shares its
// key's shard). Expected `keys.shards()` draws; each draw is a hash of 26 bytes.
std::string new_task_id_in_shard(const Keys& keys, int shard, int64_t epoch_ms);

bool is_valid_task_id(const std::string& id);

}  // namespace ripen
