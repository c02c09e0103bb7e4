// The envelope is the one document every task travels in. These tests feed the
// decoder every kind of wrong input we could think of and check that each refusal
// is `invalid` and names the field at fault, then check that every good shape is
// read, that encode and decode agree field for field, and that the size limit and
// every range limit hold exactly at their edge, both ways.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ripen/envelope.h"

namespace ripen {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

constexpr int64_t kMaxEpochMs = 253402300799999;                // 9999-12-31T23:59:59.999Z
constexpr int64_t kMaxDelayMs = 10LL * 365 * 24 * 3600 * 1000;  // 315360000000, 10 years
constexpr int64_t kMaxTimeoutMs = 7LL * 24 * 3600 * 1000;       // 604800000, 7 days

// The smallest valid envelope with `patch` merged over it; a null in the patch
// removes the field.
std::string minimal_with(const json& patch) {
  json doc = {{"v", 1}, {"queue", "emails"}, {"type", "send_email"}};
  for (const auto& item : patch.items()) {
    if (item.value().is_discarded()) {
      doc.erase(item.key());
    } else {
      doc[item.key()] = item.value();
    }
  }
  return doc.dump();
}

// A marker for "leave this field out" (null itself is a value worth testing).
json absent() { return json(json::value_t::discarded); }

// ---- refusals -------------------------------------------------------------

struct BadInput {
  std::string name;
  std::string text;
  std::string expect_in_message;  // the field name, quoted, or the reason
  size_t max_bytes = kDefaultMaxEnvelopeBytes;
};

void PrintTo(const BadInput& c, std::ostream* os) { *os << c.name; }

std::vector<BadInput> bad_inputs() {
  const std::string long_payload(kDefaultMaxEnvelopeBytes, 'x');
  return {
      // Not an envelope at all.
      {"NotJson", "not json", "not valid JSON"},
      {"EmptyText", "", "not valid JSON"},
      {"TruncatedJson", R"({"v":1,"queue":"emails")", "not valid JSON"},
      {"TrailingGarbage", minimal_with({}) + "x", "not valid JSON"},
      {"JsonArray", R"([{"v":1,"queue":"emails","type":"send_email"}])", "must be a JSON object"},
      {"JsonString", R"("hello")", "must be a JSON object"},
      {"JsonNull", "null", "must be a JSON object"},
      {"JsonNumber", "1", "must be a JSON object"},
      // v
      {"MissingV", minimal_with({{"v", absent()}}), "'v': is required"},
      {"VTwo", minimal_with({{"v", 2}}), "'v': unsupported envelope version 2"},
      {"VZero", minimal_with({{"v", 0}}), "'v': unsupported envelope version 0"},
      {"VString", minimal_with({{"v", "1"}}), "'v': must be an integer"},
      {"VFloat", R"({"v":1.0,"queue":"emails","type":"send_email"})", "'v': must be an integer"},
      {"VNull", minimal_with({{"v", nullptr}}), "'v'"},
      {"VBeyondInt", minimal_with({{"v", 4294967297LL}}), "'v'"},
      // queue
      {"MissingQueue", minimal_with({{"queue", absent()}}), "'queue': is required"},
      {"NullQueue", minimal_with({{"queue", nullptr}}), "'queue': is required"},
      {"EmptyQueue", minimal_with({{"queue", ""}}), "'queue': is required"},
      {"QueueWithSpace", minimal_with({{"queue", "my queue"}}), "'queue'"},
      {"QueueWithSlash", minimal_with({{"queue", "a/b"}}), "'queue'"},
      {"QueueWithColon", minimal_with({{"queue", "a:b"}}), "'queue'"},
      {"QueueNonAscii", minimal_with({{"queue", "caf\xc3\xa9"}}), "'queue'"},
      {"Queue129Chars", minimal_with({{"queue", std::string(129, 'q')}}), "'queue'"},
      {"QueueNumber", minimal_with({{"queue", 5}}), "'queue': must be a string"},
      // type
      {"MissingType", minimal_with({{"type", absent()}}), "'type': is required"},
      {"EmptyType", minimal_with({{"type", ""}}), "'type': is required"},
      {"TypeWithSpace", minimal_with({{"type", "send email"}}), "'type'"},
      {"TypeWithBraces", minimal_with({{"type", "a{b}"}}), "'type'"},
      {"TypeWithSlash", minimal_with({{"type", "mail/send"}}), "'type'"},
      {"Type129Chars", minimal_with({{"type", std::string(129, 't')}}), "'type'"},
      {"TypeArray", minimal_with({{"type", json::array({"a"})}}), "'type': must be a string"},
      // due_ms / delay_ms
      {"DueMsNegative", minimal_with({{"due_ms", -1}}), "'due_ms': must be at least 0"},
      {"DueMsFloat", R"({"v":1,"queue":"emails","type":"send_email","due_ms":1.5})", "'due_ms': must be an integer"},
      {"DueMsWholeFloat", R"({"v":1,"queue":"emails","type":"send_email","due_ms":1700000000000.0})",
       "'due_ms': must be an integer"},
      {"DueMsString", minimal_with({{"due_ms", "1700000000000"}}), "'due_ms': must be an integer"},
      {"DueMsOneOverYear9999", minimal_with({{"due_ms", kMaxEpochMs + 1}}), "'due_ms': must be at most"},
      {"DueMsBeyondInt64", R"({"v":1,"queue":"emails","type":"send_email","due_ms":18446744073709551615})", "'due_ms'"},
      {"BothDueAndDelay", minimal_with({{"due_ms", 1700000000000LL}, {"delay_ms", 1000}}), "not both"},
      {"DelayMsNegative", minimal_with({{"delay_ms", -1}}), "'delay_ms': must be at least 0"},
      {"DelayMsOneOverTenYears", minimal_with({{"delay_ms", kMaxDelayMs + 1}}), "'delay_ms': must be at most"},
      {"DelayMsBool", minimal_with({{"delay_ms", true}}), "'delay_ms': must be an integer"},
      // counters and limits
      {"MaxAttemptsZero", minimal_with({{"max_attempts", 0}}), "'max_attempts': must be at least 1"},
      {"MaxAttempts1001", minimal_with({{"max_attempts", 1001}}), "'max_attempts': must be at most 1000"},
      {"AttemptNegative", minimal_with({{"attempt", -1}}), "'attempt': must be at least 0"},
      {"Attempt1001", minimal_with({{"attempt", 1001}}), "'attempt': must be at most 1000"},
      {"TimeoutMsNegative", minimal_with({{"timeout_ms", -1}}), "'timeout_ms'"},
      {"TimeoutMsOverSevenDays", minimal_with({{"timeout_ms", kMaxTimeoutMs + 1}}), "'timeout_ms': must be at most"},
      {"PriorityTen", minimal_with({{"priority", 10}}), "'priority': must be at most 9"},
      {"PriorityNegative", minimal_with({{"priority", -1}}), "'priority': must be at least 0"},
      {"PriorityString", minimal_with({{"priority", "5"}}), "'priority': must be an integer"},
      {"CreatedMsNegative", minimal_with({{"created_ms", -1}}), "'created_ms'"},
      // headers
      {"HeadersArray", minimal_with({{"headers", json::array({"a", "b"})}}), "'headers': must be an object"},
      {"HeadersString", minimal_with({{"headers", "a=b"}}), "'headers': must be an object"},
      {"HeaderValueNumber", minimal_with({{"headers", {{"tenant", 7}}}}), "'headers': value of 'tenant'"},
      {"HeaderValueNull", minimal_with({{"headers", {{"tenant", nullptr}}}}), "'headers': value of 'tenant'"},
      {"HeaderValueObject", minimal_with({{"headers", {{"tenant", {{"a", "b"}}}}}}), "'headers': value of 'tenant'"},
      {"HeaderEmptyName", minimal_with({{"headers", {{"", "x"}}}}), "'headers': names must be"},
      {"HeaderName129", minimal_with({{"headers", {{std::string(129, 'h'), "x"}}}}), "'headers': names must be"},
      {"HeaderValue4097", minimal_with({{"headers", {{"big", std::string(4097, 'v')}}}}), "'headers': value of 'big'"},
      // unknown fields: a typo must not silently drop a setting
      {"UnknownFieldDelay", minimal_with({{"delay", 5000}}), "'delay': unknown field"},
      {"UnknownFieldCapitalised", minimal_with({{"Queue", "emails"}}), "'Queue': unknown field"},
      {"UnknownFieldDue", minimal_with({{"due", 1700000000000LL}}), "'due': unknown field"},
      // id
      {"IdWithDot", minimal_with({{"id", "a.b"}}), "'id'"},
      {"IdWithSpace", minimal_with({{"id", "a b"}}), "'id'"},
      {"IdWithColon", minimal_with({{"id", "t:1"}}), "'id'"},
      {"IdWithBrace", minimal_with({{"id", "{s1}"}}), "'id'"},
      {"Id65Chars", minimal_with({{"id", std::string(65, 'A')}}), "'id'"},
      {"IdNumber", minimal_with({{"id", 12}}), "'id': must be a string"},
      // idempotency_key
      {"IdempotencyKey257Bytes", minimal_with({{"idempotency_key", std::string(257, 'k')}}),
       "'idempotency_key': must be at most 256 bytes"},
      {"IdempotencyKeyControlChar",
       minimal_with({{"idempotency_key",
                      "order\x01"
                      "42"}}),
       "'idempotency_key': must not contain control characters"},
      {"IdempotencyKeyNewline", minimal_with({{"idempotency_key", "order\n42"}}), "'idempotency_key'"},
      {"IdempotencyKeyDel", minimal_with({{"idempotency_key", "order\x7f"}}), "'idempotency_key'"},
      {"IdempotencyKeyNumber", minimal_with({{"idempotency_key", 42}}), "'idempotency_key': must be a string"},
      // downstream
      {"DownstreamWithSlash", minimal_with({{"downstream", "mail/api"}}), "'downstream'"},
      {"DownstreamNumber", minimal_with({{"downstream", 1}}), "'downstream': must be a string"},
      // size
      {"PayloadOverDefaultLimit", minimal_with({{"payload", long_payload}}), "over the limit of 262144 bytes"},
      {"PayloadOverCustomLimit", minimal_with({{"payload", std::string(1100, 'x')}}), "over the limit of 1024 bytes",
       1024},
      {"RawTextOverMaxBytes", minimal_with({}), "over the limit of 10 bytes", 10},
      {"RawGarbageOverMaxBytes", std::string(2000, '{'), "2000 bytes, over the limit of 1024 bytes", 1024},
  };
}

class DecodeRefuses : public ::testing::TestWithParam<BadInput> {};

TEST_P(DecodeRefuses, AsInvalidNamingTheField) {
  const BadInput& c = GetParam();
  Result<Envelope> env = decode_envelope(c.text, c.max_bytes);
  ASSERT_FALSE(env.ok()) << "accepted: " << c.text.substr(0, 200);
  EXPECT_EQ(env.error().code, Errc::invalid);
  EXPECT_THAT(env.error().message, HasSubstr(c.expect_in_message));
}

INSTANTIATE_TEST_SUITE_P(Envelope, DecodeRefuses, ::testing::ValuesIn(bad_inputs()),
                         [](const ::testing::TestParamInfo<BadInput>& p) { return p.param.name; });

TEST(DecodeEnvelope, VersionMessageSaysWhichVersionThisRipenReads) {
  Result<Envelope> env = decode_envelope(minimal_with({{"v", 2}}));
  ASSERT_FALSE(env.ok());
  EXPECT_EQ(env.error().message, "field 'v': unsupported envelope version 2 (this ripen reads 1)");
}

TEST(DecodeEnvelope, FirstUnknownFieldIsNamedBeforeAnyOtherProblem) {
  // The version is wrong too, but a typo is the more useful thing to report.
  Result<Envelope> env = decode_envelope(R"({"v":2,"queue":"emails","type":"send_email","dealy_ms":5})");
  ASSERT_FALSE(env.ok());
  EXPECT_THAT(env.error().message, HasSubstr("'dealy_ms': unknown field"));
}

TEST(DecodeEnvelope, SizeMessageGivesActualSizeAndLimit) {
  const std::string text = minimal_with({});
  Result<Envelope> env = decode_envelope(text, text.size() - 1);
  ASSERT_FALSE(env.ok());
  EXPECT_EQ(env.error().message, "envelope is " + std::to_string(text.size()) + " bytes, over the limit of " +
                                     std::to_string(text.size() - 1) + " bytes");
}

// ---- acceptance -----------------------------------------------------------

TEST(DecodeEnvelope, MinimalEnvelopeTakesDefaults) {
  Result<Envelope> env = decode_envelope(R"({"v":1,"queue":"emails","type":"send_email"})");
  ASSERT_TRUE(env.ok()) << env.error().describe();
  EXPECT_EQ(env->v, 1);
  EXPECT_EQ(env->queue, "emails");
  EXPECT_EQ(env->type, "send_email");
  EXPECT_EQ(env->id, "");
  EXPECT_TRUE(env->payload.is_null());
  EXPECT_FALSE(env->due_ms.has_value());
  EXPECT_FALSE(env->delay_ms.has_value());
  EXPECT_EQ(env->idempotency_key, "");
  EXPECT_EQ(env->downstream, "");
  EXPECT_EQ(env->max_attempts, 0);
  EXPECT_EQ(env->attempt, 0);
  EXPECT_EQ(env->timeout_ms, 0);
  EXPECT_EQ(env->priority, 0);
  EXPECT_EQ(env->created_ms, 0);
  EXPECT_TRUE(env->headers.empty());
}

TEST(DecodeEnvelope, EveryFieldSetIsRead) {
  const std::string text = R"({
    "v": 1,
    "id": "01HZY3K8J6Q9W2E4R5T7Y8U9I0",
    "queue": "billing.invoices-eu_1",
    "type": "invoice:render.pdf-v2",
    "payload": {"invoice": 42, "lines": [1, 2]},
    "due_ms": 1795341600000,
    "idempotency_key": "invoice-42 render",
    "downstream": "pdf:renderer",
    "max_attempts": 5,
    "attempt": 2,
    "timeout_ms": 30000,
    "priority": 7,
    "created_ms": 1795341500000,
    "headers": {"tenant": "acme", "trace": "abc-123"}
  })";
  Result<Envelope> env = decode_envelope(text);
  ASSERT_TRUE(env.ok()) << env.error().describe();
  EXPECT_EQ(env->v, 1);
  EXPECT_EQ(env->id, "01HZY3K8J6Q9W2E4R5T7Y8U9I0");
  EXPECT_EQ(env->queue, "billing.invoices-eu_1");
  EXPECT_EQ(env->type, "invoice:render.pdf-v2");
  EXPECT_EQ(env->payload, json::parse(R"({"invoice": 42, "lines": [1, 2]})"));
  EXPECT_EQ(env->due_ms, std::optional<int64_t>(1795341600000));
  EXPECT_FALSE(env->delay_ms.has_value());
  EXPECT_EQ(env->idempotency_key, "invoice-42 render");
  EXPECT_EQ(env->downstream, "pdf:renderer");
  EXPECT_EQ(env->max_attempts, 5);
  EXPECT_EQ(env->attempt, 2);
  EXPECT_EQ(env->timeout_ms, 30000);
  EXPECT_EQ(env->priority, 7);
  EXPECT_EQ(env->created_ms, 1795341500000);
  EXPECT_EQ(env->headers, (std::map<std::string, std::string>{{"tenant", "acme"}, {"trace", "abc-123"}}));
}

TEST(DecodeEnvelope, DelayInsteadOfDueIsRead) {
  Result<Envelope> env = decode_envelope(minimal_with({{"delay_ms", 90000}}));
  ASSERT_TRUE(env.ok()) << env.error().describe();
  EXPECT_EQ(env->delay_ms, std::optional<int64_t>(90000));
  EXPECT_FALSE(env->due_ms.has_value());
}

TEST(DecodeEnvelope, NullOptionalFieldsReadAsAbsent) {
  Result<Envelope> env = decode_envelope(minimal_with({{"id", nullptr},
                                                       {"due_ms", nullptr},
                                                       {"delay_ms", nullptr},
                                                       {"idempotency_key", nullptr},
                                                       {"downstream", nullptr},
                                                       {"max_attempts", nullptr},
                                                       {"attempt", nullptr},
                                                       {"timeout_ms", nullptr},
                                                       {"priority", nullptr},
                                                       {"created_ms", nullptr},
                                                       {"headers", nullptr},
                                                       {"payload", nullptr}}));
  ASSERT_TRUE(env.ok()) << env.error().describe();
  EXPECT_EQ(env->id, "");
  EXPECT_FALSE(env->due_ms.has_value());
  EXPECT_FALSE(env->delay_ms.has_value());
  EXPECT_EQ(env->max_attempts, 0);
  EXPECT_TRUE(env->headers.empty());
  EXPECT_TRUE(env->payload.is_null());
}

struct PayloadKind {
  std::string name;
  std::string payload;  // JSON text
};

void PrintTo(const PayloadKind& c, std::ostream* os) { *os << c.name; }

class DecodePayload : public ::testing::TestWithParam<PayloadKind> {};

TEST_P(DecodePayload, AnyJsonKindIsKeptAndSurvivesRoundTrip) {
  const json payload = json::parse(GetParam().payload);
  Result<Envelope> env = decode_envelope(minimal_with({{"payload", payload}}));
  ASSERT_TRUE(env.ok()) << env.error().describe();
  EXPECT_EQ(env->payload, payload);
  Result<Envelope> again = decode_envelope(encode_envelope(*env));
  ASSERT_TRUE(again.ok()) << again.error().describe();
  EXPECT_EQ(again->payload, payload);
}

INSTANTIATE_TEST_SUITE_P(
    Envelope, DecodePayload,
    ::testing::Values(PayloadKind{"Object", R"({"to":"a@b.c","n":1})"}, PayloadKind{"EmptyObject", "{}"},
                      PayloadKind{"Array", R"([1,"two",3.5,false,null])"}, PayloadKind{"EmptyArray", "[]"},
                      PayloadKind{"String", R"("hello, \"world\"\n")"},
                      PayloadKind{"UnicodeString", R"("caf\u00e9 \ud83d\ude00")"}, PayloadKind{"Integer", "42"},
                      PayloadKind{"NegativeInteger", "-7"}, PayloadKind{"Float", "3.25"}, PayloadKind{"Bool", "true"},
                      PayloadKind{"Null", "null"},
                      PayloadKind{"Nested", R"({"a":[{"b":{"c":[1,2,{"d":null}]}}],"e":{}})"}),
    [](const ::testing::TestParamInfo<PayloadKind>& p) { return p.param.name; });

// ---- limits, both ways ----------------------------------------------------

struct Edge {
  std::string name;
  json accepted;  // patch at the edge: accepted
};

void PrintTo(const Edge& c, std::ostream* os) { *os << c.name; }

class DecodeAcceptsEdge : public ::testing::TestWithParam<Edge> {};

TEST_P(DecodeAcceptsEdge, AtTheLimit) {
  const std::string text = minimal_with(GetParam().accepted);
  Result<Envelope> env = decode_envelope(text);
  EXPECT_TRUE(env.ok()) << env.error().describe() << "\n" << text.substr(0, 200);
}

INSTANTIATE_TEST_SUITE_P(
    Envelope, DecodeAcceptsEdge,
    ::testing::Values(
        Edge{"PriorityZero", {{"priority", 0}}}, Edge{"PriorityNine", {{"priority", 9}}},
        Edge{"MaxAttemptsOne", {{"max_attempts", 1}}}, Edge{"MaxAttempts1000", {{"max_attempts", 1000}}},
        Edge{"AttemptZero", {{"attempt", 0}}}, Edge{"Attempt1000", {{"attempt", 1000}}},
        Edge{"TimeoutZero", {{"timeout_ms", 0}}}, Edge{"TimeoutSevenDays", {{"timeout_ms", kMaxTimeoutMs}}},
        Edge{"DueZero", {{"due_ms", 0}}}, Edge{"DueLastMsOfYear9999", {{"due_ms", kMaxEpochMs}}},
        Edge{"DelayZero", {{"delay_ms", 0}}}, Edge{"DelayTenYears", {{"delay_ms", kMaxDelayMs}}},
        Edge{"QueueOneChar", {{"queue", "q"}}}, Edge{"Queue128Chars", {{"queue", std::string(128, 'q')}}},
        Edge{"QueueAllAllowedPunctuation", {{"queue", "a.b_c-d"}}},
        Edge{"Type128Chars", {{"type", std::string(128, 't')}}}, Edge{"TypeWithColon", {{"type", "mail:send"}}},
        Edge{"IdOneChar", {{"id", "x"}}}, Edge{"Id64Chars", {{"id", std::string(64, 'A')}}},
        Edge{"IdWithDashAndUnderscore", {{"id", "task_1-a"}}},
        Edge{"IdempotencyKey256Bytes", {{"idempotency_key", std::string(256, 'k')}}},
        Edge{"IdempotencyKeyWithSpaceAndUnicode", {{"idempotency_key", "order 42 caf\xc3\xa9"}}},
        Edge{"HeaderName128", {{"headers", {{std::string(128, 'h'), "x"}}}}},
        Edge{"HeaderValue4096", {{"headers", {{"big", std::string(4096, 'v')}}}}},
        Edge{"HeaderValueEmpty", {{"headers", {{"empty", ""}}}}}, Edge{"CreatedMsZero", {{"created_ms", 0}}}),
    [](const ::testing::TestParamInfo<Edge>& p) { return p.param.name; });

Envelope minimal_envelope() {
  Envelope env;
  env.queue = "emails";
  env.type = "send_email";
  return env;
}

// Builds a string payload so that the whole encoded envelope is exactly `size` bytes.
Envelope envelope_of_encoded_size(size_t size) {
  Envelope env = minimal_envelope();
  env.payload = "";
  const size_t base = encode_envelope(env).size();
  env.payload = std::string(size - base, 'x');
  return env;
}

TEST(EnvelopeSize, WithThePayloadAlreadyEncodedTheLimitHoldsAtTheSameByte) {
  for (const auto& payload : {json("text"), json({{"a", {1, 2, 3}}, {"b", "é\"quoted\""}}), json(nullptr)}) {
    Envelope probe = minimal_envelope();
    probe.idempotency_key = "key \"with\" quotes";
    probe.headers = {{"trace", "abc"}};
    probe.payload = payload;
    const std::string payload_json = payload.dump();
    const size_t size = encode_envelope(probe).size();
    EXPECT_TRUE(validate_envelope(probe, size, payload_json).ok()) << payload_json;
    Status over = validate_envelope(probe, size - 1, payload_json);
    ASSERT_FALSE(over.ok()) << payload_json;
    EXPECT_EQ(over.error().message, "envelope is " + std::to_string(size) + " bytes, over the limit of " +
                                        std::to_string(size - 1) + " bytes");
  }
}

TEST(EnvelopeSize, ExactlyAtDefaultLimitIsAcceptedAndOneByteOverIsRefused) {
  const Envelope at = envelope_of_encoded_size(kDefaultMaxEnvelopeBytes);
  ASSERT_EQ(encode_envelope(at).size(), kDefaultMaxEnvelopeBytes);
  Status ok = validate_envelope(at);
  EXPECT_TRUE(ok.ok()) << ok.error().describe();

  const Envelope over = envelope_of_encoded_size(kDefaultMaxEnvelopeBytes + 1);
  ASSERT_EQ(encode_envelope(over).size(), kDefaultMaxEnvelopeBytes + 1);
  Status refused = validate_envelope(over);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::invalid);
  EXPECT_EQ(refused.error().message, "envelope is 262145 bytes, over the limit of 262144 bytes");
}

TEST(EnvelopeSize, DecodeAcceptsTextExactlyAtLimitAndRefusesOneByteOver) {
  const std::string at = encode_envelope(envelope_of_encoded_size(kDefaultMaxEnvelopeBytes));
  ASSERT_EQ(at.size(), kDefaultMaxEnvelopeBytes);
  Result<Envelope> env = decode_envelope(at);
  EXPECT_TRUE(env.ok()) << env.error().describe();

  const std::string over = encode_envelope(envelope_of_encoded_size(kDefaultMaxEnvelopeBytes + 1));
  Result<Envelope> refused = decode_envelope(over);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.error().message, HasSubstr("over the limit of 262144 bytes"));
}

TEST(EnvelopeSize, CustomLimitHoldsAtItsEdge) {
  const Envelope env = envelope_of_encoded_size(1000);
  EXPECT_TRUE(validate_envelope(env, 1000).ok());
  EXPECT_FALSE(validate_envelope(env, 999).ok());
  EXPECT_TRUE(decode_envelope(encode_envelope(env), 1000).ok());
  EXPECT_FALSE(decode_envelope(encode_envelope(env), 999).ok());
}

// ---- envelopes built in code ----------------------------------------------

TEST(ValidateEnvelope, MinimalBuiltEnvelopeIsValid) {
  Status st = validate_envelope(minimal_envelope());
  EXPECT_TRUE(st.ok()) << st.error().describe();
}

TEST(ValidateEnvelope, ZeroMaxAttemptsMeansDefaultAndIsValidInCode) {
  Envelope env = minimal_envelope();
  env.max_attempts = 0;
  EXPECT_TRUE(validate_envelope(env).ok());
}

struct BuiltBad {
  std::string name;
  void (*spoil)(Envelope&);
  std::string expect_in_message;
};

void PrintTo(const BuiltBad& c, std::ostream* os) { *os << c.name; }

class ValidateRefuses : public ::testing::TestWithParam<BuiltBad> {};

TEST_P(ValidateRefuses, AsInvalidNamingTheField) {
  Envelope env = minimal_envelope();
  GetParam().spoil(env);
  Status st = validate_envelope(env);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, Errc::invalid);
  EXPECT_THAT(st.error().message, HasSubstr(GetParam().expect_in_message));
}

INSTANTIATE_TEST_SUITE_P(
    Envelope, ValidateRefuses,
    ::testing::Values(
        BuiltBad{"VersionTwo", [](Envelope& e) { e.v = 2; }, "'v': unsupported envelope version 2"},
        BuiltBad{"NoQueue", [](Envelope& e) { e.queue.clear(); }, "'queue': is required"},
        BuiltBad{"QueueWithSpace", [](Envelope& e) { e.queue = "a b"; }, "'queue'"},
        BuiltBad{"NoType", [](Envelope& e) { e.type.clear(); }, "'type': is required"},
        BuiltBad{"BadId", [](Envelope& e) { e.id = "a/b"; }, "'id'"},
        BuiltBad{"DueAndDelay",
                 [](Envelope& e) {
                   e.due_ms = 1;
                   e.delay_ms = 1;
                 },
                 "not both"},
        BuiltBad{"DueNegative", [](Envelope& e) { e.due_ms = -1; }, "'due_ms'"},
        BuiltBad{"DelayNegative", [](Envelope& e) { e.delay_ms = -1; }, "'delay_ms'"},
        BuiltBad{"MaxAttemptsNegative", [](Envelope& e) { e.max_attempts = -1; }, "'max_attempts'"},
        BuiltBad{"MaxAttempts1001", [](Envelope& e) { e.max_attempts = 1001; }, "'max_attempts'"},
        BuiltBad{"AttemptNegative", [](Envelope& e) { e.attempt = -1; }, "'attempt'"},
        BuiltBad{"TimeoutOverSevenDays", [](Envelope& e) { e.timeout_ms = kMaxTimeoutMs + 1; }, "'timeout_ms'"},
        BuiltBad{"PriorityTen", [](Envelope& e) { e.priority = 10; }, "'priority'"},
        BuiltBad{"CreatedNegative", [](Envelope& e) { e.created_ms = -1; }, "'created_ms'"},
        BuiltBad{"IdempotencyKey257", [](Envelope& e) { e.idempotency_key.assign(257, 'k'); }, "'idempotency_key'"},
        BuiltBad{"IdempotencyKeyNul", [](Envelope& e) { e.idempotency_key = std::string("a\0b", 3); },
                 "'idempotency_key'"},
        BuiltBad{"DownstreamWithSpace", [](Envelope& e) { e.downstream = "a b"; }, "'downstream'"},
        BuiltBad{"HeaderEmptyName", [](Envelope& e) { e.headers[""] = "x"; }, "'headers'"}),
    [](const ::testing::TestParamInfo<BuiltBad>& p) { return p.param.name; });

TEST(EnvelopeFromJson, RefusesNonObjectWithoutThrowing) {
  for (const json& doc : {json::array(), json(1), json("x"), json(nullptr), json(true)}) {
    Result<Envelope> env = envelope_from_json(doc);
    ASSERT_FALSE(env.ok()) << doc.dump();
    EXPECT_EQ(env.error().code, Errc::invalid);
    EXPECT_THAT(env.error().message, HasSubstr("JSON object"));
  }
}

TEST(EnvelopeFromJson, ReadsAParsedDocument) {
  Result<Envelope> env = envelope_from_json(json{{"v", 1}, {"queue", "q"}, {"type", "t"}, {"priority", 3}});
  ASSERT_TRUE(env.ok()) << env.error().describe();
  EXPECT_EQ(env->queue, "q");
  EXPECT_EQ(env->type, "t");
  EXPECT_EQ(env->priority, 3);
}

// ---- encode -> decode -----------------------------------------------------

void expect_same_envelope(const Envelope& a, const Envelope& b) {
  EXPECT_EQ(a.v, b.v);
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.queue, b.queue);
  EXPECT_EQ(a.type, b.type);
  EXPECT_EQ(a.payload, b.payload);
  EXPECT_EQ(a.due_ms, b.due_ms);
  EXPECT_EQ(a.delay_ms, b.delay_ms);
  EXPECT_EQ(a.idempotency_key, b.idempotency_key);
  EXPECT_EQ(a.downstream, b.downstream);
  EXPECT_EQ(a.max_attempts, b.max_attempts);
  EXPECT_EQ(a.attempt, b.attempt);
  EXPECT_EQ(a.timeout_ms, b.timeout_ms);
  EXPECT_EQ(a.priority, b.priority);
  EXPECT_EQ(a.created_ms, b.created_ms);
  EXPECT_EQ(a.headers, b.headers);
}

Envelope full_envelope() {
  Envelope env;
  env.id = "01HZY3K8J6Q9W2E4R5T7Y8U9AB";
  env.queue = "billing.invoices";
  env.type = "invoice:render";
  env.payload = json{{"invoice", 42}, {"lines", {1, 2, 3}}, {"note", "caf\xc3\xa9"}};
  env.idempotency_key = "invoice-42";
  env.downstream = "pdf-renderer";
  env.max_attempts = 1000;
  env.attempt = 999;
  env.timeout_ms = kMaxTimeoutMs;
  env.priority = 9;
  env.created_ms = 1795341500000;
  env.headers = {{"tenant", "acme"}, {"trace", "abc-123"}};
  return env;
}

TEST(EnvelopeRoundTrip, EveryFieldWithDueTimeSurvives) {
  Envelope env = full_envelope();
  env.due_ms = kMaxEpochMs;
  Result<Envelope> back = decode_envelope(encode_envelope(env));
  ASSERT_TRUE(back.ok()) << back.error().describe();
  expect_same_envelope(env, *back);
}

TEST(EnvelopeRoundTrip, EveryFieldWithDelaySurvives) {
  Envelope env = full_envelope();
  env.delay_ms = 0;  // "now", but said explicitly: must stay present
  Result<Envelope> back = decode_envelope(encode_envelope(env));
  ASSERT_TRUE(back.ok()) << back.error().describe();
  expect_same_envelope(env, *back);
  EXPECT_TRUE(back->delay_ms.has_value());
}

TEST(EnvelopeRoundTrip, MinimalEnvelopeSurvivesAndEncodesOnlyWhatIsSet) {
  const Envelope env = minimal_envelope();
  const json doc = json::parse(encode_envelope(env));
  EXPECT_EQ(doc, json::parse(R"({"v":1,"queue":"emails","type":"send_email","payload":null})"));
  Result<Envelope> back = decode_envelope(encode_envelope(env));
  ASSERT_TRUE(back.ok()) << back.error().describe();
  expect_same_envelope(env, *back);
}

TEST(EnvelopeRoundTrip, EncodeIsCompactJson) {
  const std::string text = encode_envelope(minimal_envelope());
  EXPECT_EQ(text.find(' '), std::string::npos) << text;
  EXPECT_EQ(text.find('\n'), std::string::npos) << text;
}

TEST(EnvelopeRoundTrip, EncodeDoesNotThrowOnInvalidUtf8) {
  Envelope env = minimal_envelope();
  env.payload = std::string("bad \xff byte");
  std::string text;
  EXPECT_NO_THROW(text = encode_envelope(env));
  EXPECT_TRUE(json::accept(text)) << "the replacement keeps the output valid JSON";
}

// ---- messages: one envelope, or a bundle of them ---------------------------------

TEST(DecodeMessage, PlainEnvelopeIsOneTask) {
  const std::string text = encode_envelope(minimal_envelope());
  EXPECT_FALSE(is_bundle(text));
  auto tasks = decode_message(text, kDefaultMaxEnvelopeBytes);
  ASSERT_TRUE(tasks.ok()) << tasks.error().describe();
  ASSERT_EQ(tasks->size(), 1u);
  ASSERT_TRUE((*tasks)[0].envelope.ok());
  expect_same_envelope(minimal_envelope(), *(*tasks)[0].envelope);
}

TEST(DecodeMessage, InvalidPlainEnvelopeIsOneFailedTaskKeepingItsText) {
  const std::string text = R"({"v":1,"queue":"emails"})";
  auto tasks = decode_message(text, kDefaultMaxEnvelopeBytes);
  ASSERT_TRUE(tasks.ok());
  ASSERT_EQ(tasks->size(), 1u);
  ASSERT_FALSE((*tasks)[0].envelope.ok());
  EXPECT_NE((*tasks)[0].envelope.error().message.find("'type'"), std::string::npos);
  EXPECT_EQ((*tasks)[0].text, text);
}

TEST(DecodeMessage, BundleElementsDecodeInOrderAndABadOneFailsAlone) {
  Envelope a = minimal_envelope();
  a.id = "first";
  Envelope c = minimal_envelope();
  c.id = "third";
  const std::string bad = R"({"v":2,"queue":"emails","type":"send_email"})";
  const std::string bundle = encode_bundle({encode_envelope(a), bad, encode_envelope(c)});
  EXPECT_TRUE(is_bundle(bundle));
  EXPECT_TRUE(json::accept(bundle)) << bundle;
  auto tasks = decode_message(bundle, kDefaultMaxEnvelopeBytes);
  ASSERT_TRUE(tasks.ok()) << tasks.error().describe();
  ASSERT_EQ(tasks->size(), 3u);
  ASSERT_TRUE((*tasks)[0].envelope.ok());
  EXPECT_EQ((*tasks)[0].envelope->id, "first");
  EXPECT_TRUE((*tasks)[0].text.empty()) << "a good element's text is not kept";
  ASSERT_FALSE((*tasks)[1].envelope.ok());
  EXPECT_NE((*tasks)[1].envelope.error().message.find("'v'"), std::string::npos);
  EXPECT_EQ(json::parse((*tasks)[1].text), json::parse(bad));
  ASSERT_TRUE((*tasks)[2].envelope.ok());
  EXPECT_EQ((*tasks)[2].envelope->id, "third");
}

TEST(DecodeMessage, BundleOfOneIsABundle) {
  const std::string bundle = encode_bundle({encode_envelope(minimal_envelope())});
  EXPECT_TRUE(is_bundle(bundle));
  auto tasks = decode_message(bundle, kDefaultMaxEnvelopeBytes);
  ASSERT_TRUE(tasks.ok());
  EXPECT_EQ(tasks->size(), 1u);
}

TEST(DecodeMessage, BrokenOrEmptyBundleFailsAsAWhole) {
  for (const std::string body : {"[{\"v\":1", "[]", " [ ] "}) {
    auto tasks = decode_message(body, kDefaultMaxEnvelopeBytes);
    ASSERT_FALSE(tasks.ok()) << body;
    EXPECT_EQ(tasks.error().code, Errc::invalid);
    EXPECT_NE(tasks.error().message.find("bundle"), std::string::npos) << tasks.error().message;
  }
}

TEST(DecodeMessage, BundleLargerThanItsMostElementsAtTheirLimitIsRefused) {
  const std::string element = encode_envelope(minimal_envelope());
  const size_t limit = element.size();  // each element exactly at the limit
  std::vector<std::string> many(kMaxBundle, element);
  std::vector<std::string_view> views(many.begin(), many.end());
  const std::string bundle = encode_bundle(views);
  EXPECT_TRUE(decode_message(bundle, limit).ok());
  auto over = decode_message(bundle, limit - 1);
  ASSERT_FALSE(over.ok());
  EXPECT_NE(over.error().message.find("over the limit"), std::string::npos) << over.error().message;
}

// ---- hostile input: nesting and long names ----------------------------------------

// `depth` arrays (or objects with an empty key) nested in one another.
std::string nested_arrays(size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); }
std::string nested_objects(size_t depth) {
  std::string out;
  out.reserve(depth * 6);
  for (size_t i = 0; i < depth; ++i) out += "{\"\":";
  out += "0";
  out.append(depth, '}');
  return out;
}

std::string envelope_with_raw_payload(const std::string& payload) {
  return R"({"v":1,"queue":"emails","type":"send_email","id":"deep","payload":)" + payload + "}";
}

constexpr size_t kHostileDepth = 100'000;
constexpr size_t kRoomyLimit = 1 << 20;  // room for 100k nested objects (5 bytes a level)

// Nesting 100k levels deep once overflowed the stack (nlohmann copies and dumps
// by recursion, a frame per level) and crashed the process that decoded it.
TEST(HostileNesting, DeepArrayPayloadIsRefusedNamingTheDepth) {
  const std::string text = envelope_with_raw_payload(nested_arrays(kHostileDepth));
  ASSERT_LT(text.size(), kDefaultMaxEnvelopeBytes) << "under the size limit: only the depth can refuse it";
  auto env = decode_envelope(text);
  ASSERT_FALSE(env.ok());
  EXPECT_EQ(env.error().code, Errc::invalid);
  EXPECT_THAT(env.error().message, HasSubstr("envelope is nested deeper than 64 levels"));
}

TEST(HostileNesting, DeepObjectPayloadIsRefusedNamingTheDepth) {
  auto env = decode_envelope(envelope_with_raw_payload(nested_objects(kHostileDepth)), kRoomyLimit);
  ASSERT_FALSE(env.ok());
  EXPECT_THAT(env.error().message, HasSubstr("nested deeper than 64 levels"));
}

TEST(HostileNesting, DeepPlainMessageIsOneFailedTaskKeepingItsText) {
  const std::string text = envelope_with_raw_payload(nested_objects(kHostileDepth));
  auto tasks = decode_message(text, kRoomyLimit);
  ASSERT_TRUE(tasks.ok());
  ASSERT_EQ(tasks->size(), 1u);
  ASSERT_FALSE((*tasks)[0].envelope.ok());
  EXPECT_THAT((*tasks)[0].envelope.error().message, HasSubstr("nested deeper than 64 levels"));
  EXPECT_EQ((*tasks)[0].text, text);
}

TEST(HostileNesting, DeepBundleIsRefusedAsAWhole) {
  for (const std::string& body : {nested_arrays(kHostileDepth), "[" + nested_objects(kHostileDepth) + "]",
                                  "[" + envelope_with_raw_payload(nested_arrays(kHostileDepth)) + "]"}) {
    auto tasks = decode_message(body, kDefaultMaxEnvelopeBytes);
    ASSERT_FALSE(tasks.ok()) << body.substr(0, 80);
    EXPECT_EQ(tasks.error().code, Errc::invalid);
    EXPECT_THAT(tasks.error().message, HasSubstr("bundle is nested deeper than 65 levels"));
  }
}

// The payload may nest 63 levels: 64 with the envelope object around it.
TEST(HostileNesting, PayloadDepthLimitHoldsAtItsEdgeInEveryDecoder) {
  const std::string at_limit = envelope_with_raw_payload(nested_arrays(63));
  const std::string over = envelope_with_raw_payload(nested_arrays(64));
  EXPECT_TRUE(decode_envelope(at_limit).ok());
  EXPECT_FALSE(decode_envelope(over).ok());
  // In a bundle the same: an element that passes alone passes in a bundle.
  auto bundle = decode_message(encode_bundle({at_limit, at_limit}), kDefaultMaxEnvelopeBytes);
  ASSERT_TRUE(bundle.ok()) << bundle.error().describe();
  ASSERT_EQ(bundle->size(), 2u);
  EXPECT_TRUE((*bundle)[0].envelope.ok());
  EXPECT_FALSE(decode_message(encode_bundle({at_limit, over}), kDefaultMaxEnvelopeBytes).ok());
}

// Built in code, an envelope too deep for the decoders is refused at enqueue
// rather than stored and refused by every worker.
TEST(HostileNesting, ValidateRefusesAPayloadTheDecodersWouldRefuse) {
  Envelope env = minimal_envelope();
  env.payload = json::parse(nested_arrays(63));
  EXPECT_TRUE(validate_envelope(env).ok());
  EXPECT_TRUE(validate_envelope(env, kDefaultMaxEnvelopeBytes, nested_arrays(63)).ok());
  env.payload = json::parse(nested_arrays(64));
  auto st = validate_envelope(env);
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(st.error().message, HasSubstr("field 'payload': nested deeper than 64 levels"));
  auto pre = validate_envelope(env, kDefaultMaxEnvelopeBytes, nested_arrays(64));
  ASSERT_FALSE(pre.ok());
  EXPECT_THAT(pre.error().message, HasSubstr("field 'payload': nested deeper than 64 levels"));
}

// A refusal quoting a 140 KB field name whole outgrew an AMQP frame as a header.
TEST(HostileNames, LongUnknownFieldIsQuotedByAShortPrefix) {
  const std::string name = "evil" + std::string(140'000, 'x');
  auto env = decode_envelope(minimal_with({{name, 1}}));
  ASSERT_FALSE(env.ok());
  const std::string& msg = env.error().message;
  EXPECT_LT(msg.size(), 300u) << msg.substr(0, 400);
  EXPECT_THAT(msg, HasSubstr("field 'evilxxxx"));
  EXPECT_THAT(msg, HasSubstr("(140004 bytes): unknown field"));
}

TEST(HostileNames, LongHeaderNameAndQueueAreQuotedByAShortPrefix) {
  const std::string name(100'000, 'h');
  auto header = decode_envelope(minimal_with({{"headers", {{name, 7}}}}));
  ASSERT_FALSE(header.ok());
  EXPECT_LT(header.error().message.size(), 300u);
  EXPECT_THAT(header.error().message, HasSubstr("(100000 bytes) must be a string"));
  auto queue = check_queue_name(std::string(100'000, 'q') + " ");
  ASSERT_FALSE(queue.ok());
  EXPECT_LT(queue.error().message.size(), 300u);
  EXPECT_THAT(queue.error().message, HasSubstr("queue 'qqqq"));
}

TEST(HostileNames, ControlCharactersInANameAreEscaped) {
  auto env = decode_envelope(minimal_with({{"a\nb\"c", 1}}));
  ASSERT_FALSE(env.ok());
  EXPECT_EQ(env.error().message, "field 'a\\x0ab\"c': unknown field");
}

}  // namespace
}  // namespace ripen
