// JSON log lines are what a log shipper parses: whatever a message holds (an id
// or a field name from the wire, a child's stderr), each line must stay one valid
// JSON object, and the message must come back as it was logged.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "ripen/log.h"

namespace ripen {
namespace {

using nlohmann::json;

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// Messages that are valid UTF-8 come back byte for byte.
std::vector<std::string> hostile_messages() {
  return {
      "plain",
      R"(a "quoted" id)",
      "back\\slash",
      "line one\nline two",
      "forged\n{\"ts\":\"x\",\"level\":\"info\",\"msg\":\"injected\"}",
      "carriage\rreturn and tab\t",
      std::string("nul\0inside", 10),
      "bell\x07 escape\x1b[31m del\x7f",
      "valid utf-8: caf\xc3\xa9 \xe2\x82\xac",
      "braces {} and %v and %j",
      R"(})",
      std::string(10000, '"'),
  };
}

// A logger writing into a buffer in `format`, and the lines it wrote, parsed.
struct BufferLog {
  BufferLog(const std::string& process, const std::string& format)
      : logger("buffer", std::make_shared<spdlog::sinks::ostream_sink_st>(out)) {
    set_log_format(logger, process, format);
  }
  std::vector<json> json_lines() {
    logger.flush();
    std::vector<json> docs;
    for (const auto& line : lines_of(out.str())) {
      json doc = json::parse(line, nullptr, /*allow_exceptions=*/false);
      EXPECT_TRUE(doc.is_object()) << "not a JSON object: " << line.substr(0, 200);
      docs.push_back(std::move(doc));
    }
    return docs;
  }
  std::ostringstream out;  // before the logger, whose sink writes into it
  spdlog::logger logger;
};

TEST(JsonLog, EveryLineIsOneJsonObjectHoldingTheMessage) {
  BufferLog log("ripen-test", "json");
  const auto messages = hostile_messages();
  for (const auto& m : messages) log.logger.warn("{}", m);

  const auto lines = log.json_lines();
  ASSERT_EQ(lines.size(), messages.size()) << "one line per message: a newline in a message must not split it";
  for (size_t i = 0; i < lines.size(); ++i) {
    ASSERT_TRUE(lines[i].is_object()) << "line " << i;
    EXPECT_EQ(lines[i].value("level", ""), "warning");
    EXPECT_EQ(lines[i].value("process", ""), "ripen-test");
    EXPECT_TRUE(lines[i].contains("ts") && lines[i].contains("pid"));
    EXPECT_EQ(lines[i].value("msg", ""), messages[i]) << "line " << i;
  }
}

TEST(JsonLog, InvalidUtf8IsReplacedNotPassedThrough) {
  BufferLog log("ripen-test", "json");
  log.logger.error("bad bytes \xff\xfe, a cut sequence \xe2\x82");

  const auto lines = log.json_lines();
  ASSERT_EQ(lines.size(), 1u);
  ASSERT_TRUE(lines[0].is_object());
  const std::string msg = lines[0].value("msg", "");
  EXPECT_EQ(msg.rfind("bad bytes ", 0), 0u) << msg;
  EXPECT_NE(msg.find("\xef\xbf\xbd"), std::string::npos) << "U+FFFD in place of the bad bytes";
  EXPECT_EQ(msg.find('\xff'), std::string::npos);
}

TEST(JsonLog, ProcessNameIsEscapedToo) {
  BufferLog log("odd \"name\" 100%", "json");
  log.logger.info("hello");

  const auto lines = log.json_lines();
  ASSERT_EQ(lines.size(), 1u);
  ASSERT_TRUE(lines[0].is_object());
  EXPECT_EQ(lines[0].value("process", ""), "odd \"name\" 100%");
  EXPECT_EQ(lines[0].value("msg", ""), "hello");
}

// What a binary writes on stderr when it stops on an error, once it logs JSON.
TEST(JsonLog, FatalErrorAfterSetupIsAJsonLineOnStderr) {
  char path[] = "/tmp/ripen-log-test-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  const int saved = dup(2);
  ASSERT_GE(saved, 0);
  ASSERT_EQ(dup2(fd, 2), 2);
  setup_logging("ripen-fatal-test", "info", "json");
  log_fatal("ripen-fatal-test: config: bad \"value\"\nsecond line");
  std::fflush(stderr);
  dup2(saved, 2);
  close(saved);
  close(fd);

  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  std::remove(path);
  const auto lines = lines_of(text.str());
  ASSERT_EQ(lines.size(), 1u) << text.str();
  const json line = json::parse(lines[0], nullptr, /*allow_exceptions=*/false);
  ASSERT_TRUE(line.is_object()) << lines[0];
  EXPECT_EQ(line.value("level", ""), "critical");
  EXPECT_EQ(line.value("msg", ""), "ripen-fatal-test: config: bad \"value\"\nsecond line");
}

TEST(TextLog, KeepsItsOneLinePrefix) {
  BufferLog log("ripen-test", "text");
  log.logger.info("hello");
  log.logger.flush();
  EXPECT_NE(log.out.str().find(" info ripen-test["), std::string::npos) << log.out.str();
  EXPECT_NE(log.out.str().find("] hello"), std::string::npos) << log.out.str();
}

}  // namespace
}  // namespace ripen
