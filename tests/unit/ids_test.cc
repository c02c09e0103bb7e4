// ULIDs: 26 characters of Crockford base32 whose first ten encode the creation
// time, so ids sort by time. Task ids (new_task_id) are shorter: 14 base62
// characters, 8 of them the creation time. These tests pin the alphabet, the time
// prefix (against the ULID spec's own example), the ordering across every digit
// carry, shard placement for idempotent tasks, and the id syntax edges.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <ostream>
#include <set>
#include <string>

#include "ripen/ids.h"
#include "ripen/keys.h"

namespace ripen {
namespace {

constexpr std::string_view kCrockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

bool is_crockford(const std::string& s) { return s.find_first_not_of(kCrockford) == std::string::npos; }

// ---- new_ulid -------------------------------------------------------------

TEST(NewUlid, Is26CharactersOfCrockfordBase32) {
  for (int64_t t : {int64_t{0}, int64_t{1}, int64_t{1'795'341'600'000}, (int64_t{1} << 48) - 1}) {
    for (int i = 0; i < 200; ++i) {
      const std::string id = new_ulid(t);
      ASSERT_EQ(id.size(), 26u) << id;
      ASSERT_TRUE(is_crockford(id)) << id << " (no I, L, O, U, no lower case)";
    }
  }
}

TEST(NewUlid, TimePrefixMatchesUlidSpecExample) {
  // The ULID spec's example 01ARYZ6S41TSV4RRFFQ69G5FAV carries time 1469918176385.
  EXPECT_EQ(new_ulid(1469918176385).substr(0, 10), "01ARYZ6S41");
}

struct PrefixCase {
  int64_t epoch_ms;
  const char* prefix;
};

void PrintTo(const PrefixCase& c, std::ostream* os) { *os << c.epoch_ms; }

class UlidTimePrefix : public ::testing::TestWithParam<PrefixCase> {};

TEST_P(UlidTimePrefix, EncodesTheTimeExactly) {
  EXPECT_EQ(new_ulid(GetParam().epoch_ms).substr(0, 10), GetParam().prefix) << GetParam().epoch_ms;
}

INSTANTIATE_TEST_SUITE_P(Ids, UlidTimePrefix,
                         ::testing::Values(PrefixCase{0, "0000000000"}, PrefixCase{1, "0000000001"},
                                           PrefixCase{31, "000000000Z"}, PrefixCase{32, "0000000010"},
                                           PrefixCase{1023, "00000000ZZ"}, PrefixCase{1024, "0000000100"},
                                           PrefixCase{(int64_t{1} << 48) - 1, "7ZZZZZZZZZ"}));

TEST(NewUlid, IdsSortByTimeAcrossEveryDigitCarry) {
  // t and t+1 for a time just before each base-32 digit rolls over, plus now.
  for (int digit = 0; digit < 10; ++digit) {
    const int64_t t = (int64_t{1} << (5 * digit)) - 1;
    if (t + 1 >= (int64_t{1} << 48)) break;
    for (int i = 0; i < 20; ++i) {
      const std::string earlier = new_ulid(t);
      const std::string later = new_ulid(t + 1);
      EXPECT_LT(earlier, later) << "t=" << t;
    }
  }
  for (int64_t t = 1'795'341'600'000; t < 1'795'341'600'000 + 1000; ++t) {
    ASSERT_LT(new_ulid(t), new_ulid(t + 1)) << "t=" << t;
  }
}

TEST(NewUlid, IdsOfOneMillisecondShareThePrefixAndDiffer) {
  std::set<std::string> ids;
  for (int i = 0; i < 10'000; ++i) {
    const std::string id = new_ulid(1'795'341'600'000);
    EXPECT_EQ(id.substr(0, 10), new_ulid(1'795'341'600'000).substr(0, 10));
    ids.insert(id);
  }
  EXPECT_EQ(ids.size(), 10'000u) << "80 random bits must not collide in 10k draws";
}

TEST(NewUlid, IsAValidTaskId) { EXPECT_TRUE(is_valid_task_id(new_ulid(1'795'341'600'000))); }

// ---- new_task_id ----------------------------------------------------------

TEST(NewTaskId, IsFourteenCharactersOfBase62) {
  for (int i = 0; i < 1000; ++i) {
    const std::string id = new_task_id(1'795'341'600'000 + i);
    ASSERT_EQ(id.size(), kTaskIdLength);
    ASSERT_EQ(kTaskIdLength, 14u) << "Redis keeps strings of up to 14 bytes in 16-byte allocations";
    EXPECT_EQ(id.find_first_not_of("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"), std::string::npos)
        << id;
    EXPECT_TRUE(is_valid_task_id(id));
  }
}

TEST(NewTaskId, TimePrefixIsTheMillisecondsInBase62) {
  EXPECT_EQ(new_task_id(0).substr(0, 8), "00000000");
  EXPECT_EQ(new_task_id(61).substr(0, 8), "0000000z");
  EXPECT_EQ(new_task_id(62).substr(0, 8), "00000010");
  // Worked out by hand (repeated division by 62), not by the code under test.
  EXPECT_EQ(new_task_id(1'795'341'600'000).substr(0, 8), "0Vbh8OCe");
  EXPECT_EQ(new_task_id(1469918176385).substr(0, 8), "0PsTqrrd");
}

TEST(NewTaskId, IdsSortByTimeAsStrings) {
  std::string previous;
  for (int64_t ms : {int64_t{0}, int64_t{61}, int64_t{62}, int64_t{3843}, int64_t{3844}, int64_t{1'795'341'599'999},
                     int64_t{1'795'341'600'000}, int64_t{4'102'444'800'000}}) {
    const std::string id = new_task_id(ms);
    EXPECT_LT(previous.substr(0, 8), id.substr(0, 8)) << ms;
    previous = id;
  }
}

TEST(NewTaskId, ManyIdsOfOneMillisecondAreDistinct) {
  std::set<std::string> seen;
  for (int i = 0; i < 10'000; ++i) seen.insert(new_task_id(1'795'341'600'000));
  // 6 random base62 characters: a clash among 10k is about a one-in-1,100 event.
  EXPECT_GE(seen.size(), 9'998u);
}

// ---- new_task_id_in_shard -------------------------------------------------

TEST(NewTaskIdInShard, LandsInTheAskedShardForEveryShard) {
  for (int shards : {1, 2, 16, 64}) {
    Keys keys("ripen", shards);
    for (int shard = 0; shard < shards; ++shard) {
      const std::string id = new_task_id_in_shard(keys, shard, 1'795'341'600'000);
      EXPECT_EQ(keys.shard_of(id), shard) << id << " over " << shards;
      EXPECT_EQ(id.size(), kTaskIdLength);
      EXPECT_TRUE(is_valid_task_id(id));
    }
  }
}

TEST(NewTaskIdInShard, KeepsTheTimePrefix) {
  Keys keys("ripen", 16);
  const std::string id = new_task_id_in_shard(keys, 7, 1469918176385);
  EXPECT_EQ(id.substr(0, 8), new_task_id(1469918176385).substr(0, 8));
}

TEST(NewTaskIdInShard, SharesTheShardOfAnIdempotencyKey) {
  // The producer's use: the id of an idempotent task must share its key's slot.
  Keys keys("ripen", 16);
  for (const std::string idem : {"order-1", "order-2", "invoice 42", ""}) {
    const std::string id = new_task_id_in_shard(keys, keys.shard_of(idem), 1'795'341'600'000);
    EXPECT_EQ(keys.shard_of(id), keys.shard_of(idem)) << idem;
  }
}

// ---- is_valid_task_id -----------------------------------------------------

struct IdCase {
  std::string name;
  std::string id;
  bool valid;
};

void PrintTo(const IdCase& c, std::ostream* os) { *os << c.name; }

class TaskIdSyntax : public ::testing::TestWithParam<IdCase> {};

TEST_P(TaskIdSyntax, Edges) { EXPECT_EQ(is_valid_task_id(GetParam().id), GetParam().valid) << GetParam().id; }

INSTANTIATE_TEST_SUITE_P(
    Ids, TaskIdSyntax,
    ::testing::Values(IdCase{"Empty", "", false}, IdCase{"OneChar", "a", true}, IdCase{"Digits", "0123456789", true},
                      IdCase{"Letters", "abcXYZ", true}, IdCase{"DashAndUnderscore", "a-b_c", true},
                      IdCase{"OnlyDash", "-", true}, IdCase{"Ulid", "01ARYZ6S41TSV4RRFFQ69G5FAV", true},
                      IdCase{"Exactly64", std::string(64, 'x'), true}, IdCase{"Exactly65", std::string(65, 'x'), false},
                      IdCase{"Dot", "a.b", false}, IdCase{"Colon", "a:b", false}, IdCase{"Space", "a b", false},
                      IdCase{"Slash", "a/b", false}, IdCase{"OpenBrace", "a{b", false},
                      IdCase{"CloseBrace", "a}b", false}, IdCase{"Pipe", "a|b", false}, IdCase{"Newline", "a\n", false},
                      IdCase{"Nul", std::string("a\0b", 3), false}, IdCase{"NonAscii", "caf\xc3\xa9", false},
                      IdCase{"HighByte", "a\xff", false}),
    [](const ::testing::TestParamInfo<IdCase>& p) { return p.param.name; });

}  // namespace
}  // namespace ripen
