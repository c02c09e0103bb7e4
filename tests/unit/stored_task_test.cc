// The packed TASK format and the envelope the dispatcher builds from it: every
// envelope field a worker reads must survive the round trip, whatever the text.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "ripen/stored_task.h"

namespace ripen {
namespace {

// The TASK as the enqueue script stores it: max_attempts and created_ms in front.
std::string stored(const Envelope& e, int max_attempts, int64_t created_ms) {
  return std::to_string(max_attempts) + kSep + std::to_string(created_ms) + kSep + pack_task_tail(e);
}

Envelope full_task() {
  Envelope e;
  e.queue = "emails.eu-1";
  e.type = "send:welcome";
  e.payload = {{"to", "a@example.com"}, {"text", "quote \" backslash \\ tab \t unit-sep \x1f end"}, {"n", 1.5}};
  e.idempotency_key = "welcome \"42\" | pipes";
  e.downstream = "smtp.example";
  e.timeout_ms = 5000;
  e.priority = 7;
  e.headers = {{"trace", "abc"}, {"tenant", "t|1"}};
  return e;
}

TEST(StoredTask, ItsPriorityIsReadFromItsExtras) {
  const std::string with = stored(full_task(), 3, 1);
  EXPECT_EQ(stored_priority(*parse_stored_task(with)), 7);
  Envelope plain = full_task();
  plain.priority = 0;
  const std::string without = stored(plain, 3, 1);
  EXPECT_EQ(stored_priority(*parse_stored_task(without)), 0);
  plain.headers = {{"priority", "9"}};
  const std::string header_only = stored(plain, 3, 1);
  EXPECT_EQ(stored_priority(*parse_stored_task(header_only)), 0) << "a header named priority is not the task's";
}

TEST(StoredTask, EveryFieldSurvivesPackParseAndEnvelope) {
  const Envelope in = full_task();
  const std::string packed = stored(in, 5, 1'795'341'600'123);
  EXPECT_EQ(packed.find('\n'), std::string::npos);
  auto t = parse_stored_task(packed);
  ASSERT_TRUE(t.has_value()) << packed;
  EXPECT_EQ(t->max_attempts, 5);
  EXPECT_EQ(t->created_ms, 1'795'341'600'123);
  EXPECT_EQ(t->queue, in.queue);
  EXPECT_EQ(t->type, in.type);
  EXPECT_EQ(t->idempotency_key, in.idempotency_key);

  auto out = decode_envelope(envelope_json("0Vbh8OCeAbCdEf", *t));
  ASSERT_TRUE(out.ok()) << out.error().describe() << "\n" << envelope_json("0Vbh8OCeAbCdEf", *t);
  EXPECT_EQ(out->id, "0Vbh8OCeAbCdEf");
  EXPECT_EQ(out->queue, in.queue);
  EXPECT_EQ(out->type, in.type);
  EXPECT_EQ(out->payload, in.payload);
  EXPECT_EQ(out->idempotency_key, in.idempotency_key);
  EXPECT_EQ(out->downstream, in.downstream);
  EXPECT_EQ(out->timeout_ms, in.timeout_ms);
  EXPECT_EQ(out->priority, in.priority);
  EXPECT_EQ(out->headers, in.headers);
  EXPECT_EQ(out->max_attempts, 5);
  EXPECT_EQ(out->created_ms, 1'795'341'600'123);
}

TEST(StoredTask, MinimalTaskHasEmptyOptionalFieldsAndNullPayload) {
  Envelope e;
  e.queue = "q";
  e.type = "t";
  const std::string packed = stored(e, 3, 1);
  EXPECT_EQ(packed, std::string("3\x1f"
                                "1\x1fq\x1ft\x1f\x1f\x1fnull"));
  auto t = parse_stored_task(packed);
  ASSERT_TRUE(t.has_value());
  auto out = decode_envelope(envelope_json("x", *t));
  ASSERT_TRUE(out.ok()) << out.error().describe();
  EXPECT_TRUE(out->payload.is_null());
  EXPECT_TRUE(out->idempotency_key.empty());
}

TEST(StoredTask, PayloadNeverHoldsTheSeparator) {
  Envelope e;
  e.queue = "q";
  e.type = "t";
  e.payload = std::string(
      "a\x1f"
      "b");
  const std::string tail = pack_task_tail(e);
  // Four separators between the five tail fields, none inside the payload.
  EXPECT_EQ(std::count(tail.begin(), tail.end(), kSep), 4);
}

TEST(StoredTask, MalformedPackedTasksAreRefused) {
  EXPECT_FALSE(parse_stored_task("").has_value());
  EXPECT_FALSE(parse_stored_task("3\x1f"
                                 "1\x1fq")
                   .has_value())
      << "too few fields";
  EXPECT_FALSE(parse_stored_task("x\x1f"
                                 "1\x1fq\x1ft\x1f\x1f\x1fnull")
                   .has_value())
      << "max_attempts not a number";
  EXPECT_FALSE(parse_stored_task("3\x1f"
                                 "1.5\x1fq\x1ft\x1f\x1f\x1fnull")
                   .has_value())
      << "created_ms not an integer";
}

TEST(SplitFields, LastFieldTakesTheRest) {
  const auto f = split_fields(
      "a\x1f"
      "b\x1f"
      "c\x1f"
      "d",
      3);
  ASSERT_EQ(f.size(), 3u);
  EXPECT_EQ(f[0], "a");
  EXPECT_EQ(f[1], "b");
  EXPECT_EQ(f[2],
            "c\x1f"
            "d");
  EXPECT_EQ(split_fields("", 4).size(), 1u);
  EXPECT_EQ(split_fields("a\x1f", 4).size(), 2u) << "a trailing separator ends with an empty field";
}

TEST(FieldSafe, ControlCharactersBecomeSpacesButNewlinesAndTabsStay) {
  EXPECT_EQ(field_safe("a\x1f"
                       "b\x01"
                       "c\nd\te\x7f"),
            "a b c\nd\te ");
}

// A worker's start compares the digest of the payload it was sent, decoded and
// encoded again, with the stored payload's (start.lua): encoding what an
// encoding parses to must give the same bytes, or a genuine task would be
// refused as forged.
TEST(StoredTask, AnEncodedPayloadEncodesToItselfAfterParsing) {
  const char* payloads[] = {
      R"({"a":1,"b":[1.5,-0.0,1e300,2.2250738585072014e-308,0.1,1.0,-17],"z":null})",
      R"({"big":18446744073709551615,"neg":-9223372036854775808,"s":"\u0000\u001f\"\\\/é☃😀"})",
      R"({"b":2,"a":{"y":true,"x":false}})",
      R"("just a string with \n and \t")",
      R"([[],{},"",0])",
      "12345678901234567890123",
      "3.141592653589793",
  };
  for (const char* text : payloads) {
    const std::string stored = encode_payload(nlohmann::json::parse(text));
    EXPECT_EQ(encode_payload(nlohmann::json::parse(stored)), stored) << text;
  }
  // Invalid UTF-8 is replaced once, then stays as it is.
  const std::string replaced =
      encode_payload(nlohmann::json(std::string("a\xff"
                                                "b")));
  EXPECT_EQ(encode_payload(nlohmann::json::parse(replaced)), replaced);
}

TEST(StoredTask, PayloadDigestIsSha1HexAsRedisComputesIt) {
  EXPECT_EQ(payload_digest("abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
  EXPECT_EQ(payload_digest(""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
}

}  // namespace
}  // namespace ripen
