#include "ripen/redis.h"

#include <hiredis/hiredis.h>
#include <hiredis/sds.h>
#include <sys/time.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <iterator>
#include <thread>

#include <spdlog/spdlog.h>

namespace ripen {
namespace {

// A pipeline is written out as it is formatted once this much waits (see flush()).
constexpr size_t kSendEarlyBytes = 16 * 1024;

timeval to_timeval(std::chrono::milliseconds ms) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

std::vector<const char*> argv_of(const std::vector<std::string>& args, std::vector<size_t>& lens) {
  std::vector<const char*> argv;
  argv.reserve(args.size());
  lens.clear();
  lens.reserve(args.size());
  for (const auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  return argv;
}

bool parse_int(std::string_view s, int& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

// ---- URL -------------------------------------------------------------------

std::string RedisUrl::redacted() const {
  const std::string cred = password.empty() ? (user.empty() ? "" : user + "@") : user + ":***@";
  return "redis://" + cred + host + ":" + std::to_string(port) + "/" + std::to_string(db);
}

Result<std::string> percent_decode(std::string_view text) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out.push_back(text[i]);
      continue;
    }
    if (i + 2 >= text.size()) {
      return make_error(Errc::invalid, "'%' must be followed by two hex digits");
    }
    const int hi = hex(text[i + 1]);
    const int lo = hex(text[i + 2]);
    if (hi < 0 || lo < 0) return make_error(Errc::invalid, "'%' must be followed by two hex digits");
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

Result<RedisUrl> parse_redis_url(std::string_view url) {
  // No part of the URL is quoted back in these errors: wherever a mistake is,
  // a password may sit next to it (a scheme-less "user:pw@host", a password
  // taken for a port in "redis://:pw", ...), and errors end up in logs.
  constexpr std::string_view scheme = "redis://";
  if (url.substr(0, scheme.size()) != scheme) {
    const bool other_scheme = url.find("://") != std::string_view::npos;
    return make_error(Errc::invalid, other_scheme ? "redis URL must start with redis:// (rediss:// is not supported: "
                                                    "see the README for TLS through a tunnel)"
                                                  : "redis URL must start with redis://; it has no scheme");
  }
  std::string_view rest = url.substr(scheme.size());
  RedisUrl out;
  // The last '@' ends the credentials: a raw '@' in a password still parses.
  if (auto at = rest.rfind('@'); at != std::string_view::npos) {
    std::string_view cred = rest.substr(0, at);
    rest = rest.substr(at + 1);
    auto colon = cred.find(':');
    // "redis://secret@host" has been read as a password alone; keep it so.
    std::string_view user = colon == std::string_view::npos ? std::string_view() : cred.substr(0, colon);
    std::string_view password = colon == std::string_view::npos ? cred : cred.substr(colon + 1);
    auto u = percent_decode(user);
    if (!u) return make_error(Errc::invalid, "redis URL: the user name is badly percent-encoded: " + u.error().message);
    auto p = percent_decode(password);
    if (!p) return make_error(Errc::invalid, "redis URL: the password is badly percent-encoded: " + p.error().message);
    out.user = std::move(*u);
    out.password = std::move(*p);
  }
  std::string_view hostport = rest;
  if (auto slash = rest.find('/'); slash != std::string_view::npos) {
    hostport = rest.substr(0, slash);
    std::string_view db = rest.substr(slash + 1);
    if (!db.empty() && (!parse_int(db, out.db) || out.db < 0)) {
      return make_error(Errc::invalid, "redis URL: the database (after the host) is not a number");
    }
  }
  if (auto colon = hostport.rfind(':'); colon != std::string_view::npos) {
    std::string_view port = hostport.substr(colon + 1);
    if (!parse_int(port, out.port) || out.port <= 0 || out.port > 65535) {
      return make_error(Errc::invalid, "redis URL: the port is not a number from 1 to 65535");
    }
    hostport = hostport.substr(0, colon);
  }
  if (hostport.empty()) return make_error(Errc::invalid, "redis URL: host is empty");
  out.host = std::string(hostport);
  return out;
}

RedisUrl redis_url_of(const Config& config) {
  auto url = parse_redis_url(config.redis_url);
  if (!url) throw ConfigError("redis_url: " + url.error().message);
  if (config.redis_password) url->password = *config.redis_password;
  return *url;
}

// ---- replies ---------------------------------------------------------------

void RedisReply::Free::operator()(redisReply* r) const {
  if (r != nullptr) freeReplyObject(r);
}
RedisReply::RedisReply(redisReply* r) : reply_(r) {}
RedisReply::View RedisReply::view() const { return View(reply_.get()); }
bool RedisReply::is_nil() const { return view().is_nil(); }
bool RedisReply::is_string() const { return view().is_string(); }
bool RedisReply::is_integer() const { return view().is_integer(); }
bool RedisReply::is_array() const { return view().is_array(); }
std::string RedisReply::str() const { return view().str(); }
int64_t RedisReply::integer() const { return view().integer(); }
size_t RedisReply::size() const { return view().size(); }
RedisReply::View RedisReply::at(size_t i) const { return view().at(i); }

bool RedisReply::View::is_nil() const { return r_ == nullptr || r_->type == REDIS_REPLY_NIL; }
bool RedisReply::View::is_string() const {
  return r_ != nullptr && (r_->type == REDIS_REPLY_STRING || r_->type == REDIS_REPLY_STATUS);
}
bool RedisReply::View::is_integer() const { return r_ != nullptr && r_->type == REDIS_REPLY_INTEGER; }
bool RedisReply::View::is_array() const { return r_ != nullptr && r_->type == REDIS_REPLY_ARRAY; }
std::string_view RedisReply::View::sv() const {
  if (!is_string()) return {};
  return {r_->str, r_->len};
}
std::string RedisReply::View::str() const { return std::string(sv()); }
int64_t RedisReply::View::integer() const {
  if (is_integer()) return r_->integer;
  int64_t v = 0;
  auto s = sv();
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}
size_t RedisReply::View::size() const { return is_array() ? r_->elements : 0; }
RedisReply::View RedisReply::View::at(size_t i) const {
  if (!is_array() || i >= r_->elements) return View(nullptr);
  return View(r_->element[i]);
}

// ---- client ----------------------------------------------------------------

Redis::Redis(RedisUrl url, std::chrono::milliseconds timeout, Clock& clock)
    : url_(std::move(url)), timeout_(timeout), pacer_(clock) {}

Redis::~Redis() {
  if (ctx_ != nullptr) redisFree(ctx_);
}

bool Redis::connected() const { return ctx_ != nullptr && ctx_->err == 0; }

int Redis::fd() const { return ctx_ == nullptr ? -1 : ctx_->fd; }

void Redis::set_timeout(std::chrono::milliseconds timeout) {
  timeout_ = timeout;
  if (ctx_ != nullptr) redisSetTimeout(ctx_, to_timeval(timeout_));
}

void Redis::mark_broken(const std::string& why) {
  if (ctx_ != nullptr) {
    redisFree(ctx_);
    ctx_ = nullptr;
  }
  shas_.clear();
  pending_.clear();
  const auto wait = pacer_.failed();
  spdlog::debug("redis {}: connection dropped ({}); next attempt in {} ms", url_.redacted(), why, wait.count());
}

Error Redis::io_error(std::string_view what) {
  std::string msg = "redis " + url_.redacted() + ": " + std::string(what);
  if (ctx_ != nullptr && ctx_->err != 0) msg += ": " + std::string(ctx_->errstr);
  const bool timed_out = ctx_ != nullptr && ctx_->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK);
  mark_broken(msg);
  return make_error(timed_out ? Errc::timeout : Errc::unavailable, msg);
}

Status Redis::connect() {
  if (ctx_ != nullptr) {
    redisFree(ctx_);
    ctx_ = nullptr;
  }
  shas_.clear();
  const timeval tv = to_timeval(timeout_);
  ctx_ = redisConnectWithTimeout(url_.host.c_str(), url_.port, tv);
  if (ctx_ == nullptr) return make_error(Errc::internal, "redis: out of memory creating a connection");
  if (ctx_->err != 0) return io_error("cannot connect");
  redisSetTimeout(ctx_, tv);
  redisEnableKeepAlive(ctx_);
  auto handshake = [&](const std::vector<std::string>& args) -> Status {
    std::vector<size_t> lens;
    auto argv = argv_of(args, lens);
    auto* r = static_cast<redisReply*>(redisCommandArgv(ctx_, static_cast<int>(argv.size()), argv.data(), lens.data()));
    if (r == nullptr) return io_error("handshake failed");
    RedisReply reply(r);
    if (r->type == REDIS_REPLY_ERROR) {
      std::string msg = "redis " + url_.redacted() + ": " + args[0] + " refused: " + std::string(r->str, r->len);
      mark_broken(msg);
      return make_error(Errc::server, msg);
    }
    return {};
  };
  if (!url_.user.empty()) {
    // An ACL user (Redis 6+). Sent even without a password: AUTH is how a
    // client names its user, and the server says whether it may log in.
    if (auto st = handshake({"AUTH", url_.user, url_.password}); !st) return st;
  } else if (!url_.password.empty()) {
    if (auto st = handshake({"AUTH", url_.password}); !st) return st;
  }
  if (url_.db != 0) {
    if (auto st = handshake({"SELECT", std::to_string(url_.db)}); !st) return st;
  }
  return {};
}

Status Redis::ping() {
  if (!connected()) {
    if (auto st = connect(); !st) return st;
  }
  auto pong = command({"PING"});
  if (!pong) return pong.error();
  return {};
}

Status Redis::ensure_connected() {
  if (connected()) return {};
  if (!pacer_.ready()) {
    return make_error(Errc::unavailable, "redis " + url_.redacted() + ": not connected (waiting to reconnect)");
  }
  return connect();
}

Errc redis_error_code(std::string_view reply) {
  // Replies that say "not now" rather than "never": the server is loading,
  // busy with a script, failing over, out of memory, or forgot a script (a
  // restart). Retrying them is right; retrying any other error reply (a script
  // error, a wrong type) would hold the caller's work for ever.
  static constexpr std::string_view kTransient[] = {"LOADING",  "BUSY",       "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN",
                                                    "READONLY", "NOREPLICAS", "OOM",      "NOSCRIPT",    "MISCONF"};
  for (std::string_view prefix : kTransient) {
    if (reply.substr(0, prefix.size()) == prefix) return Errc::unavailable;
    // A script's redis.call() that met one is reported inside a script error.
    if (reply.find(std::string(" ") + std::string(prefix) + " ") != std::string_view::npos) return Errc::unavailable;
  }
  return Errc::server;
}

Result<RedisReply> Redis::command(const std::vector<std::string>& args) {
  if (auto st = ensure_connected(); !st) return st.error();
  std::vector<size_t> lens;
  auto argv = argv_of(args, lens);
  auto* r = static_cast<redisReply*>(redisCommandArgv(ctx_, static_cast<int>(argv.size()), argv.data(), lens.data()));
  if (r == nullptr) return io_error(args.empty() ? "command failed" : args[0] + " failed");
  RedisReply reply(r);
  if (r->type == REDIS_REPLY_ERROR) {
    std::string msg(r->str, r->len);
    const Errc code = redis_error_code(msg);
    return make_error(code, std::move(msg));
  }
  return reply;
}

Status Redis::load_script(const LuaScript& script) {
  if (shas_.count(script.name) != 0) return {};
  auto r = command({"SCRIPT", "LOAD", script.source});
  if (!r) return make_error(r.error().code, "loading script '" + script.name + "': " + r.error().message);
  shas_[script.name] = r->str();
  return {};
}

Result<RedisReply> Redis::eval(const LuaScript& script, const std::vector<std::string>& keys,
                               const std::vector<std::string>& args) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (auto st = load_script(script); !st) return st.error();
    std::vector<std::string> cmd;
    cmd.reserve(3 + keys.size() + args.size());
    cmd.push_back("EVALSHA");
    cmd.push_back(shas_[script.name]);
    cmd.push_back(std::to_string(keys.size()));
    cmd.insert(cmd.end(), keys.begin(), keys.end());
    cmd.insert(cmd.end(), args.begin(), args.end());
    auto r = command(cmd);
    if (!r && r.error().message.rfind("NOSCRIPT", 0) == 0) {
      shas_.erase(script.name);  // the server forgot it (restart or SCRIPT FLUSH): load again
      continue;
    }
    if (!r && (r.error().code == Errc::server || r.error().code == Errc::unavailable) && connected()) {
      return make_error(r.error().code, "script '" + script.name + "': " + r.error().message);
    }
    return r;
  }
  return make_error(Errc::server, "script '" + script.name + "' keeps disappearing from the server (NOSCRIPT)");
}

void Redis::append(const std::vector<std::string>& args) { pending_.push_back(args); }

void Redis::append_eval(const LuaScript& script, std::vector<std::string>&& keys, std::vector<std::string>&& args) {
  if (!load_script(script)) {
    pending_.push_back({"EVAL", script.source, std::to_string(keys.size())});
  } else {
    pending_.push_back({"EVALSHA", shas_[script.name], std::to_string(keys.size())});
  }
  auto& cmd = pending_.back();
  cmd.reserve(cmd.size() + keys.size() + args.size());
  std::move(keys.begin(), keys.end(), std::back_inserter(cmd));
  std::move(args.begin(), args.end(), std::back_inserter(cmd));
}

void Redis::append_eval(const LuaScript& script, const std::vector<std::string>& keys,
                        const std::vector<std::string>& args) {
  // The SHA must be known before queueing; a failed load shows up as the failure
  // of this command when flushed.
  if (!load_script(script)) {
    pending_.push_back({"EVAL", script.source, std::to_string(keys.size())});
  } else {
    pending_.push_back({"EVALSHA", shas_[script.name], std::to_string(keys.size())});
  }
  auto& cmd = pending_.back();
  cmd.insert(cmd.end(), keys.begin(), keys.end());
  cmd.insert(cmd.end(), args.begin(), args.end());
}

Result<std::vector<Result<RedisReply>>> Redis::flush() {
  auto cmds = std::move(pending_);
  pending_.clear();
  if (auto st = ensure_connected(); !st) return st.error();
  std::vector<size_t> lens;
  for (const auto& args : cmds) {
    auto argv = argv_of(args, lens);
    if (redisAppendCommandArgv(ctx_, static_cast<int>(argv.size()), argv.data(), lens.data()) != REDIS_OK) {
      return io_error("pipeline append failed");
    }
    // Send what is formatted once there is a good deal of it: Redis starts on
    // the first commands while the rest are formatted, and the output buffer
    // never grows (copied at each growth) to the size of the whole pipeline.
    if (sdslen(ctx_->obuf) >= kSendEarlyBytes) {
      int done = 0;
      while (!done) {
        if (redisBufferWrite(ctx_, &done) != REDIS_OK) return io_error("pipeline write failed");
      }
    }
  }
  std::vector<Result<RedisReply>> out;
  out.reserve(cmds.size());
  for (size_t i = 0; i < cmds.size(); ++i) {
    void* raw = nullptr;
    if (redisGetReply(ctx_, &raw) != REDIS_OK || raw == nullptr) return io_error("pipeline read failed");
    auto* r = static_cast<redisReply*>(raw);
    RedisReply reply(r);
    if (r->type == REDIS_REPLY_ERROR) {
      std::string msg(r->str, r->len);
      if (msg.rfind("NOSCRIPT", 0) == 0) shas_.clear();
      const Errc code = redis_error_code(msg);
      out.emplace_back(make_error(code, std::move(msg)));
    } else {
      out.emplace_back(std::move(reply));
    }
  }
  return out;
}

Result<int64_t> Redis::time_ms() {
  auto r = command({"TIME"});
  if (!r) return r.error();
  if (r->size() != 2) return make_error(Errc::internal, "redis TIME: unexpected reply");
  return r->at(0).integer() * 1000 + r->at(1).integer() / 1000;
}

Result<RedisReply> Redis::read_reply() {
  if (auto st = ensure_connected(); !st) return st.error();
  void* raw = nullptr;
  if (redisGetReply(ctx_, &raw) != REDIS_OK || raw == nullptr) return io_error("read failed");
  return RedisReply(static_cast<redisReply*>(raw));
}

Result<std::optional<RedisReply>> Redis::buffered_reply() {
  if (!connected()) return std::optional<RedisReply>();
  void* raw = nullptr;
  if (redisGetReplyFromReader(ctx_, &raw) != REDIS_OK) return io_error("reading buffered reply failed");
  if (raw == nullptr) return std::optional<RedisReply>();
  return std::optional<RedisReply>(RedisReply(static_cast<redisReply*>(raw)));
}

// ---- reaching Redis at start ------------------------------------------------

bool await_redis(Redis& redis, std::chrono::milliseconds bound, const std::atomic<bool>& stopping, std::string_view who,
                 Clock& clock) {
  const auto deadline = clock.now() + bound;
  bool said = false;
  while (true) {
    const Status st = redis.ping();
    if (st) {
      if (said) spdlog::info("{}: redis {} answers", who, redis.url().redacted());
      return true;
    }
    if (stopping.load()) return false;
    if (clock.now() >= deadline) {
      throw RedisUnreachable(fmt::format(
          "cannot reach Redis at {} within {} ms (redis_startup_timeout): {}; not taking any work from RabbitMQ",
          redis.url().redacted(), bound.count(), st.error().message));
    }
    if (!said) {
      spdlog::warn("{}: waiting for Redis at {} (up to {} ms, redis_startup_timeout) before consuming: {}", who,
                   redis.url().redacted(), bound.count(), st.error().message);
      said = true;
    }
    // A quarter of a second between attempts, cut short by stop().
    const auto next = std::min(deadline, clock.now() + std::chrono::milliseconds(250));
    while (!stopping.load() && clock.now() < next) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace ripen
