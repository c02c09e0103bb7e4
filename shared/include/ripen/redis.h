// A RAII client over hiredis. Every call has a timeout; failures come back as
// Result errors carrying the server's own message, never as a null reply. A broken
// connection is re-opened on a later call, no sooner than its backoff allows, so a
// caller's loop simply retries and the client paces the reconnects.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ripen/backoff.h"
#include "ripen/clock.h"
#include "ripen/config.h"
#include "ripen/result.h"

struct redisContext;
struct redisReply;

namespace ripen {

struct RedisUrl {
  std::string host = "127.0.0.1";
  int port = 6379;
  std::string user;  // an ACL user (Redis 6+); empty: AUTH with the password alone
  std::string password;
  int db = 0;
  // The URL with any password replaced by "***", safe for logs.
  std::string redacted() const;
};

// redis://[[user]:password@]host[:port][/db], or redis://password@host...
// User and password are percent-decoded ("%40" for '@', "%3A" for ':'). A
// refusal never quotes the URL: it may hold a password.
Result<RedisUrl> parse_redis_url(std::string_view url);
// The config's redis_url, parsed, with config.redis_password (a password file
// or RIPEN_REDIS_PASSWORD) in place of the URL's; a ConfigError naming
// redis_url when malformed.
RedisUrl redis_url_of(const Config& config);
// `text` percent-decoded; an error for a '%' not followed by two hex digits.
Result<std::string> percent_decode(std::string_view text);

// An owned reply. Arrays own their elements through the root.
class RedisReply {
 public:
  RedisReply() = default;
  explicit RedisReply(redisReply* r);
  RedisReply(RedisReply&&) noexcept = default;
  RedisReply& operator=(RedisReply&&) noexcept = default;

  bool is_nil() const;
  bool is_string() const;  // bulk or status string
  bool is_integer() const;
  bool is_array() const;
  std::string str() const;
  int64_t integer() const;
  size_t size() const;  // array length
  // A non-owning view of an array element.
  class View;
  View at(size_t i) const;
  View view() const;

 private:
  struct Free {
    void operator()(redisReply* r) const;
  };
  std::unique_ptr<redisReply, Free> reply_;
};

class RedisReply::View {
 public:
  explicit View(const redisReply* r) : r_(r) {}
  bool is_nil() const;
  bool is_string() const;
  bool is_integer() const;
  bool is_array() const;
  std::string str() const;
  std::string_view sv() const;
  int64_t integer() const;  // also parses a numeric string
  size_t size() const;
  View at(size_t i) const;

 private:
  const redisReply* r_;
};

// The error code for an error reply: unavailable for those that say "not now"
// (LOADING, BUSY, OOM, NOSCRIPT after a restart, a failover...), which callers
// retry; server for the rest (a script error, a wrong type), which they must not.
Errc redis_error_code(std::string_view reply);

// A Lua script, loaded once per connection with SCRIPT LOAD and called by SHA.
struct LuaScript {
  std::string name;
  std::string source;
};

class Redis {
 public:
  Redis(RedisUrl url, std::chrono::milliseconds timeout = std::chrono::seconds(5),
        Clock& clock = SystemClock::instance());
  ~Redis();
  Redis(const Redis&) = delete;
  Redis& operator=(const Redis&) = delete;

  // Opens the connection now (AUTH and SELECT included).
  Status connect();
  bool connected() const;
  // Whether Redis answers: connects now if not connected (a real attempt, not
  // the paced reconnect, so its error is the server's or the network's), then
  // PING.
  Status ping();

  Result<RedisReply> command(const std::vector<std::string>& args);
  // EVALSHA, loading the script first if this connection has not seen it (or the
  // server forgot it: NOSCRIPT after a restart or SCRIPT FLUSH).
  Result<RedisReply> eval(const LuaScript& script, const std::vector<std::string>& keys,
                          const std::vector<std::string>& args);

  // Pipelining: queue commands, then read their replies in order.
  void append(const std::vector<std::string>& args);
  void append_eval(const LuaScript& script, const std::vector<std::string>& keys, const std::vector<std::string>& args);
  // The same, taking the keys and arguments over rather than copying them.
  void append_eval(const LuaScript& script, std::vector<std::string>&& keys, std::vector<std::string>&& args);
  // Sends what was appended and reads one reply per appended command.
  Result<std::vector<Result<RedisReply>>> flush();

  // Redis TIME in epoch milliseconds.
  Result<int64_t> time_ms();

  // For subscribers: the socket, and reading a reply that has arrived.
  int fd() const;
  Result<RedisReply> read_reply();
  // A reply already read off the socket and buffered, if any (never blocks).
  Result<std::optional<RedisReply>> buffered_reply();
  // Sets the socket timeout used by blocking reads.
  void set_timeout(std::chrono::milliseconds timeout);

  const RedisUrl& url() const { return url_; }

 private:
  Status ensure_connected();
  Status load_script(const LuaScript& script);
  void mark_broken(const std::string& why);
  Error io_error(std::string_view what);

  RedisUrl url_;
  std::chrono::milliseconds timeout_;
  redisContext* ctx_ = nullptr;
  std::unordered_map<std::string, std::string> shas_;  // script name -> sha, for this connection
  std::vector<std::vector<std::string>> pending_;      // appended commands not yet flushed
  ReconnectPacer pacer_;
};

// ---- reaching Redis at start ------------------------------------------------

// A worker or dispatcher whose Redis did not answer within
// redis_startup_timeout: it must not take work from RabbitMQ that it cannot
// record, so it stops. Its message names the URL (redacted) and the last error.
class RedisUnreachable : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The exit code of ripen-worker and ripen-dispatcher after RedisUnreachable
// (1 is any other failure, 2 a configuration error).
inline constexpr int kExitRedisUnreachable = 3;

// Waits until `redis` connects (AUTH and SELECT included) and answers PING,
// before the caller consumes anything. Logs once, as a warning naming the URL
// (redacted) and the error, that `who` waits for it. Returns true once Redis
// answers, false if `stopping` is raised meanwhile; throws RedisUnreachable
// once `bound` has passed without an answer (bound 0: one attempt).
bool await_redis(Redis& redis, std::chrono::milliseconds bound, const std::atomic<bool>& stopping, std::string_view who,
                 Clock& clock = SystemClock::instance());

}  // namespace ripen
