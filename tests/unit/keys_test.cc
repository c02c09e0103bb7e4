// Keys is the single source of every Redis key and AMQP name. These tests pin the
// names down exactly, check the Redis Cluster property the Lua scripts depend on
// (all keys a script touches share one `{sN}` hash tag), and check that the shard
// hash is the stable, spelled-out FNV-1a it promises to be.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <ostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "ripen/ids.h"
#include "ripen/keys.h"

namespace ripen {
namespace {

// The hash tag Redis Cluster hashes: the text between the first '{' and the
// next '}', when that is non-empty; otherwise the whole key.
std::string hash_tag(const std::string& key) {
  const auto open = key.find('{');
  if (open == std::string::npos) return key;
  const auto close = key.find('}', open + 1);
  if (close == std::string::npos || close == open + 1) return key;
  return key.substr(open + 1, close - open - 1);
}

// ---- stable_hash ----------------------------------------------------------

struct HashCase {
  const char* input;
  uint64_t expected;
};

void PrintTo(const HashCase& c, std::ostream* os) { *os << c.input; }

class StableHash : public ::testing::TestWithParam<HashCase> {};

TEST_P(StableHash, IsFnv1a64) { EXPECT_EQ(stable_hash(GetParam().input), GetParam().expected) << GetParam().input; }

// Published FNV-1a 64 test vectors.
INSTANTIATE_TEST_SUITE_P(Keys, StableHash,
                         ::testing::Values(HashCase{"", 14695981039346656037ULL}, HashCase{"a", 0xaf63dc4c8601ec8cULL},
                                           HashCase{"foobar", 0x85944171f73967e8ULL}));

TEST(StableHash, HashesBytesNotCharacters) {
  // Bytes above 0x7f must be taken as unsigned: a signed char would change the hash.
  const std::string high("\xff", 1);
  EXPECT_EQ(stable_hash(high), (14695981039346656037ULL ^ 0xffULL) * 1099511628211ULL);
}

TEST(StableHash, EmbeddedNulIsPartOfTheInput) { EXPECT_NE(stable_hash(std::string_view("a\0b", 3)), stable_hash("a")); }

// ---- constructor ----------------------------------------------------------

TEST(KeysConstructor, RefusesZeroShards) { EXPECT_THROW(Keys("ripen", 0), std::invalid_argument); }
TEST(KeysConstructor, RefusesNegativeShards) { EXPECT_THROW(Keys("ripen", -1), std::invalid_argument); }
TEST(KeysConstructor, AcceptsOneShard) { EXPECT_EQ(Keys("ripen", 1).shards(), 1); }
TEST(KeysConstructor, Accepts1024Shards) { EXPECT_EQ(Keys("ripen", 1024).shards(), 1024); }
TEST(KeysConstructor, Refuses1025Shards) { EXPECT_THROW(Keys("ripen", 1025), std::invalid_argument); }
TEST(KeysConstructor, RefusesEmptyNamespace) { EXPECT_THROW(Keys("", 16), std::invalid_argument); }

TEST(KeysConstructor, KeepsNamespaceAndShards) {
  Keys keys("prod", 32);
  EXPECT_EQ(keys.ns(), "prod");
  EXPECT_EQ(keys.shards(), 32);
}

// ---- Redis names ----------------------------------------------------------

TEST(KeysRedis, ShardKeysAreSpelledExactly) {
  Keys keys("ripen", 16);
  EXPECT_EQ(keys.shard_prefix(3), "ripen:{s3}:");
  EXPECT_EQ(keys.due(3), "ripen:{s3}:due");
  EXPECT_EQ(keys.inflight(3), "ripen:{s3}:inflight");
  EXPECT_EQ(keys.lease(3), "ripen:{s3}:lease");
  EXPECT_EQ(keys.fence(3), "ripen:{s3}:fence");
  EXPECT_EQ(keys.due(0), "ripen:{s0}:due");
  EXPECT_EQ(keys.due(15), "ripen:{s15}:due");
}

TEST(KeysRedis, EveryKeyOfAShardSharesItsHashTag) {
  Keys keys("ripen", 16);
  for (int shard = 0; shard < keys.shards(); ++shard) {
    const std::string tag = "s" + std::to_string(shard);
    for (const std::string& key :
         {keys.shard_prefix(shard), keys.due(shard), keys.inflight(shard), keys.lease(shard), keys.fence(shard)}) {
      EXPECT_EQ(hash_tag(key), tag) << key;
    }
  }
}

TEST(KeysRedis, EndedIndexIsPerShardAndBucketsAreBuiltFromItsPrefix) {
  Keys keys("ripen", 16);
  EXPECT_EQ(keys.ended_index(3), "ripen:{s3}:ended");
  // The scripts name a bucket shard_prefix + "ended:<width>:<n>": same slot.
  EXPECT_EQ(hash_tag(keys.shard_prefix(3) + "ended:225000:7979788"), hash_tag(keys.ended_index(3)));
}

TEST(KeysRedis, MinuteCountsArePerShardAndMinuteAndMatchWhatTheScriptsBuild) {
  Keys keys("ripen", 16);
  EXPECT_EQ(keys.minute_counts(3, 29'456'640), "ripen:{s3}:minute:29456640");
  // The finish script builds the same name from the shard prefix.
  EXPECT_EQ(keys.minute_counts(3, 29'456'640), keys.shard_prefix(3) + "minute:29456640");
  EXPECT_EQ(hash_tag(keys.minute_counts(3, 29'456'640)), hash_tag(keys.due(3)));
}

TEST(KeysRedis, TaskAndStatusHashesArePerShard) {
  Keys keys("ripen", 16);
  EXPECT_EQ(keys.tasks(3), "ripen:{s3}:tasks");
  EXPECT_EQ(keys.status(3), "ripen:{s3}:status");
}

TEST(KeysRedis, IdempotencyKeyLandsInShardOfItsKey) {
  Keys keys("ripen", 16);
  for (int i = 0; i < 500; ++i) {
    const std::string idem = "order-" + std::to_string(i);
    const std::string key = keys.idempotency("mail", "send", idem);
    EXPECT_EQ(hash_tag(key), "s" + std::to_string(keys.shard_of(idem))) << key;
    EXPECT_EQ(key, keys.shard_prefix(keys.shard_of(idem)) + "idem:mail/send/" + idem);
  }
}

TEST(KeysRedis, IdempotencyKeyWithBracesDoesNotMoveTheHashTag) {
  // Redis uses the first {...}; the shard tag comes before anything the user wrote.
  Keys keys("ripen", 16);
  const std::string key = keys.idempotency("q", "t", "{evil}");
  EXPECT_EQ(hash_tag(key), "s" + std::to_string(keys.shard_of("{evil}")));
}

TEST(KeysRedis, TaskWithIdFromShardSharesThatShardsSlot) {
  Keys keys("ripen", 16);
  for (int shard = 0; shard < keys.shards(); ++shard) {
    const std::string id = new_task_id_in_shard(keys, shard, 1'795'341'600'000);
    EXPECT_EQ(hash_tag(keys.status(keys.shard_of(id))), hash_tag(keys.due(shard))) << id;
    EXPECT_EQ(hash_tag(keys.tasks(keys.shard_of(id))), hash_tag(keys.due(shard))) << id;
  }
}

TEST(KeysRedis, NamespaceWideKeys) {
  Keys keys("ripen", 16);
  EXPECT_EQ(keys.wake_channel(), "ripen:wake");
  EXPECT_EQ(keys.dispatchers(), "ripen:dispatchers");
  EXPECT_EQ(keys.breaker_open("sms-gateway"), "ripen:breaker:sms-gateway:open");
  EXPECT_EQ(keys.breakers("host:42"), "ripen:breakers:host:42");
}

TEST(KeysRedis, NamespacesKeepKeysApart) {
  Keys a("test-a", 4);
  Keys b("test-b", 4);
  EXPECT_NE(a.due(0), b.due(0));
  EXPECT_NE(a.ended_index(0), b.ended_index(0));
  EXPECT_NE(a.tasks(0), b.tasks(0));
  EXPECT_EQ(a.ended_index(0).rfind("test-a:", 0), 0u);
  EXPECT_EQ(b.ended_index(0).rfind("test-b:", 0), 0u);
}

// ---- AMQP names -----------------------------------------------------------

TEST(KeysAmqp, NamesAreSpelledExactlyUnderTheNamespace) {
  Keys keys("ripen", 16);
  EXPECT_EQ(keys.task_exchange(), "ripen.tasks");
  EXPECT_EQ(keys.queue("emails"), "ripen.q.emails");
  EXPECT_EQ(keys.dead_exchange(), "ripen.dlx");
  EXPECT_EQ(keys.dead_queue("emails"), "ripen.dlq.emails");
  EXPECT_EQ(keys.dead_queue(Keys::kUnroutable), "ripen.dlq._unroutable");
}

TEST(KeysAmqp, OtherNamespaceChangesEveryName) {
  Keys keys("t-42", 16);
  EXPECT_EQ(keys.task_exchange(), "t-42.tasks");
  EXPECT_EQ(keys.queue("a.b"), "t-42.q.a.b");
  EXPECT_EQ(keys.dead_exchange(), "t-42.dlx");
  EXPECT_EQ(keys.dead_queue("a.b"), "t-42.dlq.a.b");
}

// ---- shard_of -------------------------------------------------------------

TEST(ShardOf, IsTheHashModuloShards) {
  for (int shards : {1, 2, 3, 16, 1000, 1024}) {
    Keys keys("ripen", shards);
    for (const char* s : {"", "a", "foobar", "01ARYZ6S41TSV4RRFFQ69G5FAV"}) {
      EXPECT_EQ(keys.shard_of(s), static_cast<int>(stable_hash(s) % static_cast<uint64_t>(shards)))
          << s << " over " << shards;
    }
  }
}

TEST(ShardOf, OneShardTakesEverything) {
  Keys keys("ripen", 1);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(keys.shard_of(new_ulid(i)), 0);
}

TEST(ShardOf, DoesNotDependOnNamespace) {
  // A task's shard is a function of its id alone, so renaming a namespace never
  // reshuffles the wheel.
  Keys a("one", 16);
  Keys b("two", 16);
  for (int i = 0; i < 100; ++i) {
    const std::string id = new_ulid(i);
    EXPECT_EQ(a.shard_of(id), b.shard_of(id));
  }
}

TEST(ShardOf, AlwaysInRange) {
  for (int shards : {1, 7, 16, 1024}) {
    Keys keys("ripen", shards);
    for (int i = 0; i < 2000; ++i) {
      const int s = keys.shard_of(new_ulid(1'795'341'600'000 + i));
      ASSERT_GE(s, 0);
      ASSERT_LT(s, shards);
    }
  }
}

TEST(ShardOf, SpreadsUlidsEvenlyOverSixteenShards) {
  Keys keys("ripen", 16);
  constexpr int kIds = 10'000;
  std::array<int, 16> counts{};
  for (int i = 0; i < kIds; ++i) ++counts[static_cast<size_t>(keys.shard_of(new_ulid(1'795'341'600'000 + i / 10)))];
  const double mean = kIds / 16.0;
  for (size_t s = 0; s < counts.size(); ++s) {
    EXPECT_GE(counts[s], mean * 0.75) << "shard " << s;
    EXPECT_LE(counts[s], mean * 1.25) << "shard " << s;
  }
}

TEST(ShardOf, SpreadsUlidsOfOneMillisecondEvenly) {
  // A burst of tasks created in the same millisecond shares the whole time
  // prefix; only the random part can spread them.
  Keys keys("ripen", 16);
  constexpr int kIds = 10'000;
  std::array<int, 16> counts{};
  for (int i = 0; i < kIds; ++i) ++counts[static_cast<size_t>(keys.shard_of(new_ulid(1'795'341'600'000)))];
  const double mean = kIds / 16.0;
  for (size_t s = 0; s < counts.size(); ++s) {
    EXPECT_GE(counts[s], mean * 0.75) << "shard " << s;
    EXPECT_LE(counts[s], mean * 1.25) << "shard " << s;
  }
}

}  // namespace
}  // namespace ripen
