#include "ripen/config.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include <toml++/toml.h>

#include "ripen/amqp.h"
#include "ripen/duration.h"
#include "ripen/envelope.h"
#include "ripen/net_address.h"
#include "ripen/redis.h"
#include "ripen/untrusted.h"

namespace ripen {
namespace {

std::string fmt_number(double v) {
  std::ostringstream out;
  out << v;
  return out.str();
}

// Quoted config text in an error: a short prefix, so a pasted blob does not fill the message.
std::string quote_cut(const std::string& text) { return cut_text(text, 80); }

// Walks one TOML table, handing each known key to its reader and refusing the
// rest: a misspelt key silently ignored is a setting that never took effect.
class TableReader {
 public:
  TableReader(const toml::table& table, std::string path, std::string source)
      : table_(table), path_(std::move(path)), source_(std::move(source)) {}

  ~TableReader() noexcept(false) {
    if (std::uncaught_exceptions() > 0) return;
    for (const auto& [key, node] : table_) {
      if (seen_.count(std::string(key.str())) == 0) {
        throw ConfigError(where(std::string(key.str()), node) + ": unknown key");
      }
    }
  }

  template <class T>
  void read(const std::string& key, T& out, int64_t lo = 0, int64_t hi = INT64_MAX) {
    seen_.insert(key);
    const toml::node* node = table_.get(key);
    if (node == nullptr) return;
    if constexpr (std::is_same_v<T, std::string>) {
      auto v = node->value<std::string>();
      if (!v) throw ConfigError(where(key, *node) + ": must be a string");
      out = *v;
    } else if constexpr (std::is_same_v<T, bool>) {
      auto v = node->value<bool>();
      if (!v || !node->is_boolean()) throw ConfigError(where(key, *node) + ": must be true or false");
      out = *v;
    } else {
      if (!node->is_integer()) throw ConfigError(where(key, *node) + ": must be an integer");
      const int64_t v = *node->value<int64_t>();
      if (v < lo || v > hi) {
        throw ConfigError(where(key, *node) + ": must be between " + std::to_string(lo) + " and " + std::to_string(hi));
      }
      out = static_cast<T>(v);
    }
  }

  // Durations may be written as strings ("30s") or integer milliseconds.
  void read_duration(const std::string& key, int64_t& out, int64_t lo = 0) {
    seen_.insert(key);
    const toml::node* node = table_.get(key);
    if (node == nullptr) return;
    int64_t v = 0;
    if (node->is_integer()) {
      v = *node->value<int64_t>();
    } else if (auto s = node->value<std::string>()) {
      auto d = parse_duration_ms(*s);
      if (!d) throw ConfigError(where(key, *node) + ": " + d.error().message);
      v = *d;
    } else {
      throw ConfigError(where(key, *node) + ": must be a duration like \"30s\" or integer milliseconds");
    }
    if (v < lo) throw ConfigError(where(key, *node) + ": must be at least " + std::to_string(lo) + " ms");
    out = v;
  }

  // A number in [lo, hi]; integers are taken too (1 for 1.0).
  void read_number(const std::string& key, double& out, double lo, double hi) {
    seen_.insert(key);
    const toml::node* node = table_.get(key);
    if (node == nullptr) return;
    if (!node->is_number()) throw ConfigError(where(key, *node) + ": must be a number");
    const double v = *node->value<double>();
    if (!(v >= lo && v <= hi)) {
      throw ConfigError(where(key, *node) + ": must be between " + fmt_number(lo) + " and " + fmt_number(hi));
    }
    out = v;
  }

  void read_strings(const std::string& key, std::vector<std::string>& out) {
    seen_.insert(key);
    const toml::node* node = table_.get(key);
    if (node == nullptr) return;
    const toml::array* arr = node->as_array();
    if (arr == nullptr) throw ConfigError(where(key, *node) + ": must be an array of strings");
    out.clear();
    for (const auto& item : *arr) {
      auto v = item.value<std::string>();
      if (!v) throw ConfigError(where(key, item) + ": must be an array of strings");
      out.push_back(*v);
    }
  }

  const toml::table* sub(const std::string& key) {
    seen_.insert(key);
    const toml::node* node = table_.get(key);
    if (node == nullptr) return nullptr;
    if (!node->is_table()) throw ConfigError(where(key, *node) + ": must be a table ([" + key + "])");
    return node->as_table();
  }

  // The table under `key` in a table keyed by task type ([types.<type>],
  // [handlers.http.types.<type>]); a key that is no task type is refused.
  const toml::table* type_table(const std::string& key) {
    const toml::table* table = sub(key);
    if (!is_downstream_name(key)) {
      throw ConfigError(where(key, *table_.get(key)) + ": not a task type (1-128 characters of [A-Za-z0-9._:-])");
    }
    return table;
  }

  // Marks a key read by the caller's own means (a key of more than one type).
  void mark_read(const std::string& key) { seen_.insert(key); }

  std::string child(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }

  std::string where(const std::string& key, const toml::node& node) const {
    std::ostringstream out;
    out << source_;
    if (node.source().begin.line > 0) out << ":" << node.source().begin.line;
    out << ": key '" << child(key) << "'";
    return out.str();
  }

 private:
  const toml::table& table_;
  std::string path_;
  std::string source_;
  std::set<std::string> seen_;
};

// One [breakers.<name>] table over `p` (the defaults, or [breakers.default]).
void read_breaker(const toml::table& t, const std::string& path, const std::string& source, BreakerPolicy& p) {
  TableReader r(t, path, source);
  std::string window = p.window == BreakerPolicy::Window::count ? "count" : "time";
  r.read("window", window);
  if (window != "count" && window != "time") {
    throw ConfigError(r.where("window", *t.get("window")) + ": must be \"count\" or \"time\"");
  }
  p.window = window == "count" ? BreakerPolicy::Window::count : BreakerPolicy::Window::time;
  r.read("window_calls", p.window_calls, 1, 100'000);
  r.read_duration("window_time", p.window_ms, 1000);
  r.read("minimum_calls", p.minimum_calls, 1, 100'000);
  r.read_number("failure_rate", p.failure_rate, 0.0001, 1);
  r.read_duration("slow_call", p.slow_call_ms, 0);
  r.read_number("slow_rate", p.slow_rate, 0.0001, 1);
  r.read_duration("open", p.open_ms, 1);
  r.read_number("open_backoff", p.open_backoff, 1, 100);
  r.read_duration("max_open", p.max_open_ms, 1);
  r.read("half_open_calls", p.half_open_calls, 1, 10'000);
  if (p.max_open_ms < p.open_ms) throw ConfigError(source + ": [" + path + "] max_open: must be at least open");
  if (auto error = check_breaker_policy(p); !error.empty()) throw ConfigError(source + ": [" + path + "] " + error);
}

int64_t env_int(const std::string& name, const std::string& value, int64_t lo, int64_t hi) {
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(value.c_str(), &end, 10);
  if (value.empty() || *end != '\0' || errno != 0 || v < lo || v > hi) {
    throw ConfigError("environment " + name + "=" + quote_short(value) + ": must be an integer between " +
                      std::to_string(lo) + " and " + std::to_string(hi));
  }
  return v;
}

// ---- the http handler and exec hygiene ------------------------------------------

// A URL prefix of [handlers.http.types.<type>] allow: checked here for its
// shape; the handler parses it again with curl at start and compares parsed
// URLs (worker/src/http_handler.cc).
std::string http_prefix_problem(const std::string& prefix) {
  const size_t scheme_end = prefix.find("://");
  if (scheme_end == std::string::npos) return "must start with http:// or https://";
  std::string scheme = prefix.substr(0, scheme_end);
  std::transform(scheme.begin(), scheme.end(), scheme.begin(), [](unsigned char c) { return std::tolower(c); });
  if (scheme != "http" && scheme != "https") return "must start with http:// or https://";
  const std::string rest = prefix.substr(scheme_end + 3);
  if (rest.empty() || rest[0] == '/' || rest[0] == ':') return "must name a host";
  for (unsigned char c : prefix) {
    if (c <= 0x20 || c == 0x7f) return "must not contain spaces or control characters";
  }
  if (rest.find_first_of("?#") != std::string::npos) return "must not have a query or fragment";
  if (rest.substr(0, rest.find('/')).find('@') != std::string::npos) return "must not have user or password";
  return {};
}

void read_http_handler(const toml::table& t, const std::string& source, HttpHandlerConfig& h) {
  TableReader r(t, "handlers.http", source);
  r.read("allow_private", h.allow_private);
  r.read_strings("allow_networks", h.allow_networks);
  for (const auto& n : h.allow_networks) {
    if (auto net = parse_ip_network(n); !net) {
      throw ConfigError(r.where("allow_networks", *t.get("allow_networks")) + ": " + net.error().message);
    }
  }
  r.read("max_response_bytes", h.max_response_bytes, 1, 1LL << 30);
  r.read("low_speed_bytes", h.low_speed_bytes, 1, 1LL << 30);
  r.read_duration("low_speed_time", h.low_speed_time_ms, 1000);
  if (const auto* types = r.sub("types")) {
    TableReader all(*types, "handlers.http.types", source);
    for (const auto& [name, node] : *types) {
      const std::string type(name.str());
      const auto* table = all.type_table(type);
      TableReader tr(*table, "handlers.http.types." + type, source);
      std::vector<std::string> allow;
      tr.read_strings("allow", allow);
      if (allow.empty()) {
        throw ConfigError(source + ": [handlers.http.types." + type +
                          "] allow: must list at least one URL prefix, e.g. [\"https://api.example.com/v1/\"]");
      }
      for (const auto& prefix : allow) {
        if (auto problem = http_prefix_problem(prefix); !problem.empty()) {
          throw ConfigError(tr.where("allow", *table->get("allow")) + ": '" + quote_cut(prefix) + "' " + problem);
        }
      }
      h.types[type] = std::move(allow);
    }
  }
}

void read_exec_limits(const toml::table& t, const std::string& source, std::map<std::string, ExecLimits>& out) {
  TableReader all(t, "worker.exec_limits", source);
  for (const auto& [name, node] : t) {
    const std::string type(name.str());
    const auto* table = all.sub(type);
    TableReader r(*table, "worker.exec_limits." + type, source);
    ExecLimits l;
    r.read("user", l.user);
    r.read("group", l.group);
    r.read("cpu_seconds", l.cpu_seconds, 1, 1LL << 31);
    r.read("memory_mb", l.memory_mb, 1, 1LL << 24);
    r.read("open_files", l.open_files, 3, 1LL << 20);
    r.read("processes", l.processes, 1, 1LL << 22);
    out[type] = l;
  }
}

// dispatcher.auto_declare: true / "configured", "any", false / "none".
void read_auto_declare(TableReader& r, const toml::table& table, DispatcherConfig::AutoDeclare& out) {
  using AutoDeclare = DispatcherConfig::AutoDeclare;
  const toml::node* node = table.get("auto_declare");
  if (node == nullptr) return;
  r.mark_read("auto_declare");
  const auto on = node->value_exact<bool>();
  const auto word = node->value_exact<std::string>();
  if (on) {
    out = *on ? AutoDeclare::configured : AutoDeclare::none;
  } else if (word && *word == "configured") {
    out = AutoDeclare::configured;
  } else if (word && *word == "any") {
    out = AutoDeclare::any;
  } else if (word && *word == "none") {
    out = AutoDeclare::none;
  } else {
    throw ConfigError(r.where("auto_declare", *node) + ": must be true, false, \"configured\", \"any\" or \"none\"");
  }
}

void check_exec_env(const std::vector<std::string>& names, const std::string& where) {
  for (const auto& n : names) {
    const std::string_view name = !n.empty() && n.back() == '*' ? std::string_view(n).substr(0, n.size() - 1) : n;
    const bool ok = !name.empty() && std::all_of(name.begin(), name.end(),
                                                 [](unsigned char c) { return std::isalnum(c) != 0 || c == '_'; });
    if (!ok) {
      throw ConfigError(where + ": '" + quote_cut(n) +
                        "' is not a variable name (letters, digits, '_', and an optional trailing '*')");
    }
  }
}

}  // namespace

EnvLookup process_env() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

void apply_toml(Config& c, const std::string& text, const std::string& source) {
  toml::table root;
  try {
    root = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    std::ostringstream out;
    out << source << ":" << e.source().begin.line << ": " << e.description();
    throw ConfigError(out.str());
  }
  TableReader top(root, "", source);
  top.read("redis_url", c.redis_url);
  top.read("amqp_url", c.amqp_url);
  top.read("namespace", c.ns);
  // ---- transport and secrets ----
  top.read("redis_password_file", c.redis_password_file);
  top.read("amqp_password_file", c.amqp_password_file);
  if (const auto* t = top.sub("amqp")) {
    TableReader amqp(*t, "amqp", source);
    if (const auto* tls = amqp.sub("tls")) {
      TableReader r(*tls, "amqp.tls", source);
      r.read("ca_file", c.amqp_tls.ca_file);
      r.read("cert_file", c.amqp_tls.cert_file);
      r.read("key_file", c.amqp_tls.key_file);
      r.read("verify", c.amqp_tls.verify);
    }
  }
  // ----
  top.read("shards", c.shards, 1, 1024);
  top.read("max_envelope_bytes", c.max_envelope_bytes, 1024, 64LL * 1024 * 1024);
  top.read("default_max_attempts", c.default_max_attempts, 1, 1000);
  top.read_duration("record_retention", c.record_retention_ms, 1000);
  top.read_duration("idempotency_retention", c.idempotency_retention_ms, 0);
  top.read_duration("redis_startup_timeout", c.redis_startup_timeout_ms, 0);
  if (const auto* t = top.sub("retry")) {
    TableReader r(*t, "retry", source);
    r.read_duration("base", c.retry_backoff.base_ms, 1);
    r.read_duration("cap", c.retry_backoff.cap_ms, 1);
  }
  if (const auto* t = top.sub("types")) {
    TableReader all(*t, "types", source);
    for (const auto& [name, node] : *t) {
      const std::string type(name.str());
      const auto* table = all.type_table(type);
      TableReader r(*table, "types." + type, source);
      TaskTypeConfig tc;
      r.read("max_attempts", tc.max_attempts, 1, 1000);
      BackoffPolicy backoff = c.retry_backoff;
      const bool has_retry = table->contains("retry_base") || table->contains("retry_cap");
      r.read_duration("retry_base", backoff.base_ms, 1);
      r.read_duration("retry_cap", backoff.cap_ms, 1);
      if (backoff.cap_ms < backoff.base_ms) {
        throw ConfigError(source + ": [types." + type + "] retry_cap: must be at least retry_base");
      }
      if (has_retry) tc.retry = backoff;
      r.read_duration("timeout", tc.timeout_ms, 1);
      r.read_duration("max_timeout", tc.max_timeout_ms, 1);
      if (tc.max_timeout_ms > 0 && tc.timeout_ms > tc.max_timeout_ms) {
        throw ConfigError(source + ": [types." + type + "] timeout: must be at most max_timeout");
      }
      r.read_strings("permanent_errors", tc.permanent_errors);
      std::string blocking = "concurrent";
      r.read("blocking", blocking);
      if (blocking == "serial") {
        tc.blocking = Blocking::serial;
      } else if (blocking == "discard_if_busy") {
        tc.blocking = Blocking::discard_if_busy;
      } else if (blocking != "concurrent") {
        throw ConfigError(r.where("blocking", *table->get("blocking")) +
                          ": must be \"concurrent\", \"serial\" or \"discard_if_busy\"");
      }
      c.types[type] = tc;
    }
  }
  if (const auto* t = top.sub("breakers")) {
    // [breakers.default] first: every other downstream's table starts from it.
    TableReader all(*t, "breakers", source);
    if (const auto* d = all.sub("default")) read_breaker(*d, "breakers.default", source, c.breakers["default"]);
    for (const auto& [name, node] : *t) {
      const std::string ds(name.str());
      if (ds == "default") continue;
      const auto* table = all.sub(ds);
      if (!is_downstream_name(ds)) {
        throw ConfigError(all.where(ds, node) + ": not a downstream name (1-128 characters of [A-Za-z0-9._:-])");
      }
      BreakerPolicy p = c.breakers.count("default") ? c.breakers["default"] : BreakerPolicy{};
      read_breaker(*table, "breakers." + ds, source, p);
      c.breakers[ds] = p;
    }
  }
  if (const auto* t = top.sub("handlers")) {
    TableReader r(*t, "handlers", source);
    if (const auto* http = r.sub("http")) read_http_handler(*http, source, c.http);
  }
  if (const auto* t = top.sub("log")) {
    TableReader r(*t, "log", source);
    r.read("level", c.log_level);
    r.read("format", c.log_format);
  }
  if (const auto* t = top.sub("dispatcher")) {
    TableReader r(*t, "dispatcher", source);
    auto& d = c.dispatcher;
    r.read("batch", d.batch, 1, 10000);
    r.read("confirm_window", d.confirm_window, 1, 65535);
    r.read("bundle", d.bundle, 1, static_cast<int>(kMaxBundle));
    r.read_duration("tick", d.tick_ms, 0);
    r.read_duration("inflight_lease", d.inflight_lease_ms, 100);
    r.read_duration("shard_lease", d.shard_lease_ms, 300);
    r.read_duration("lost_after", d.lost_after_ms, 1000);
    r.read_duration("max_poll", d.max_poll_ms, 1);
    read_auto_declare(r, *t, d.auto_declare);
    r.read_strings("queues", d.queues);
    r.read("ingress", d.ingress);
    r.read("ingress_prefetch", d.ingress_prefetch, 1, 65535);
  }
  if (const auto* t = top.sub("ingress")) {
    TableReader r(*t, "ingress", source);
    auto& p = c.ingress;
    r.read_strings("allowed_queues", p.allowed_queues);
    r.read_strings("allowed_types", p.allowed_types);
    r.read("reply_to_prefix", p.reply_to_prefix);
    r.read("dead_letter_max_bytes", p.dead_letter_max_bytes, 1024, 1LL << 40);
    r.read("dead_letter_body_bytes", p.dead_letter_body_bytes, 0, 1LL << 20);
    if (const auto* u = r.sub("users")) {
      TableReader users(*u, "ingress.users", source);
      for (const auto& [name, node] : *u) {
        std::vector<std::string> types;
        users.read_strings(std::string(name.str()), types);
        p.users[std::string(name.str())] = std::move(types);
      }
    }
    auto check_names = [&](const std::vector<std::string>& names, const std::string& key, auto is_name,
                           const char* what) {
      if (!t->contains(key)) return;  // as an earlier file left it, checked then
      for (const auto& n : names) {
        if (n != "*" && !is_name(n)) {
          throw ConfigError(r.where(key, *t->get_as<toml::array>(key)) + ": '" + quote_cut(n) + "' is not " + what);
        }
      }
    };
    check_names(p.allowed_queues, "allowed_queues", is_queue_name, "a queue name");
    check_names(p.allowed_types, "allowed_types", is_downstream_name, "a task type");
  }
  if (const auto* t = top.sub("worker")) {
    TableReader r(*t, "worker", source);
    auto& w = c.worker;
    r.read_strings("queues", w.queues);
    r.read("concurrency", w.concurrency, 1, 1024);
    r.read("prefetch", w.prefetch, 0, 65535);
    r.read("local_queue", w.local_queue, 0, 1'000'000);
    r.read("hand_back", w.hand_back);
    if (const auto* q = r.sub("queue")) {
      TableReader all(*q, "worker.queue", source);
      for (const auto& [name, node] : *q) {
        const std::string queue(name.str());
        const auto* table = all.sub(queue);
        TableReader qr(*table, "worker.queue." + queue, source);
        QueueSettings s;
        qr.read("weight", s.weight, 1, 1000);
        qr.read("concurrency", s.concurrency, 0, 1024);
        w.queue[queue] = s;
      }
    }
    r.read_duration("exec_timeout", w.exec_timeout_ms, 1);
    r.read_duration("max_task_timeout", w.max_task_timeout_ms, 1);
    r.read_strings("exec_env", w.exec_env);
    if (t->contains("exec_env")) check_exec_env(w.exec_env, r.where("exec_env", *t->get("exec_env")));
    if (const auto* l = r.sub("exec_limits")) read_exec_limits(*l, source, w.exec_limits);
    r.read_duration("shutdown_grace", w.shutdown_grace_ms, 0);
    r.read_duration("lease_grace", w.lease_grace_ms, 0);
    r.read_duration("unknown_type_grace", w.unknown_type_grace_ms, 0);
    if (const auto* e = r.sub("exec")) {
      for (const auto& [type, node] : *e) {
        auto v = node.value<std::string>();
        if (!v || v->empty()) {
          throw ConfigError(source + ": key 'worker.exec." + std::string(type.str()) + "': must be a command string");
        }
        w.exec[std::string(type.str())] = *v;
      }
    }
  }
}

void apply_env(Config& c, const EnvLookup& env) {
  if (auto v = env("RIPEN_REDIS_URL")) c.redis_url = *v;
  if (auto v = env("RIPEN_AMQP_URL")) c.amqp_url = *v;
  if (auto v = env("RIPEN_NAMESPACE")) c.ns = *v;
  if (auto v = env("RIPEN_SHARDS")) c.shards = static_cast<int>(env_int("RIPEN_SHARDS", *v, 1, 1024));
  if (auto v = env("RIPEN_LOG_LEVEL")) c.log_level = *v;
  if (auto v = env("RIPEN_LOG_FORMAT")) c.log_format = *v;
  // ---- transport and secrets ----
  if (auto v = env("RIPEN_REDIS_PASSWORD_FILE")) c.redis_password_file = *v;
  if (auto v = env("RIPEN_AMQP_PASSWORD_FILE")) c.amqp_password_file = *v;
  if (auto v = env("RIPEN_REDIS_PASSWORD")) c.redis_password = *v;
  if (auto v = env("RIPEN_AMQP_PASSWORD")) c.amqp_password = *v;
  if (auto v = env("RIPEN_AMQP_TLS_CA_FILE")) c.amqp_tls.ca_file = *v;
  if (auto v = env("RIPEN_AMQP_TLS_CERT_FILE")) c.amqp_tls.cert_file = *v;
  if (auto v = env("RIPEN_AMQP_TLS_KEY_FILE")) c.amqp_tls.key_file = *v;
  if (auto v = env("RIPEN_AMQP_TLS_VERIFY")) {
    if (*v == "true" || *v == "1") {
      c.amqp_tls.verify = true;
    } else if (*v == "false" || *v == "0") {
      c.amqp_tls.verify = false;
    } else {
      throw ConfigError("environment RIPEN_AMQP_TLS_VERIFY='" + v->substr(0, 16) + "': must be true, false, 1 or 0");
    }
  }
}

namespace {

// The secret in `path`, without its trailing newline(s). The error names the
// key and the path; the content is never quoted.
std::string read_secret_file(const std::string& key, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(key + " '" + path + "': cannot be read: " + std::strerror(errno));
  std::stringstream buf;
  buf << in.rdbuf();
  if (in.bad()) throw ConfigError(key + " '" + path + "': cannot be read");
  std::string secret = buf.str();
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
  if (secret.empty()) throw ConfigError(key + " '" + path + "': the file is empty");
  return secret;
}

}  // namespace

void read_password_files(Config& c) {
  if (!c.redis_password && !c.redis_password_file.empty()) {
    c.redis_password = read_secret_file("redis_password_file", c.redis_password_file);
  }
  if (!c.amqp_password && !c.amqp_password_file.empty()) {
    c.amqp_password = read_secret_file("amqp_password_file", c.amqp_password_file);
  }
}

Config load_config(const std::optional<std::string>& path, const EnvLookup& env) {
  Config c;
  std::optional<std::string> file = path;
  if (!file) file = env("RIPEN_CONFIG");
  if (file && !file->empty()) {
    std::ifstream in(*file);
    if (!in) throw ConfigError("config file '" + *file + "': cannot be read");
    std::stringstream buf;
    buf << in.rdbuf();
    apply_toml(c, buf.str(), *file);
  }
  apply_env(c, env);
  read_password_files(c);
  validate_config(c);
  return c;
}

std::vector<std::string> configured_queues(const Config& c) {
  std::set<std::string> out(c.dispatcher.queues.begin(), c.dispatcher.queues.end());
  out.insert(c.worker.queues.begin(), c.worker.queues.end());
  for (const auto& [name, settings] : c.worker.queue) out.insert(name);
  for (const auto& q : c.ingress.allowed_queues) {
    if (q != "*") out.insert(q);
  }
  return {out.begin(), out.end()};
}

void validate_config(const Config& c) {
  if (auto r = parse_redis_url(c.redis_url); !r) throw ConfigError("redis_url: " + r.error().message);
  if (auto r = parse_amqp_url(c.amqp_url); !r) throw ConfigError("amqp_url: " + r.error().message);
  if (c.ns.empty() || c.ns.find_first_of(" {}:") != std::string::npos) {
    throw ConfigError("namespace " + quote_short(c.ns) + ": must be non-empty without spaces, braces or colons");
  }
  if (c.shards < 1 || c.shards > 1024) throw ConfigError("shards: must be between 1 and 1024");
  static const std::set<std::string> levels = {"trace", "debug", "info", "warn", "error", "critical", "off"};
  if (levels.count(c.log_level) == 0) {
    throw ConfigError("log.level " + quote_short(c.log_level) +
                      ": must be one of trace, debug, info, warn, error, critical, off");
  }
  if (c.log_format != "text" && c.log_format != "json") {
    throw ConfigError("log.format " + quote_short(c.log_format) + ": must be text or json");
  }
  if (c.retry_backoff.cap_ms < c.retry_backoff.base_ms) throw ConfigError("retry.cap: must be at least retry.base");
  if (c.dispatcher.inflight_lease_ms <= c.dispatcher.max_poll_ms) {
    throw ConfigError("dispatcher.inflight_lease: must be longer than dispatcher.max_poll");
  }
  if (c.worker.concurrency < 1) throw ConfigError("worker.concurrency: must be at least 1");
  for (const auto& [type, prefixes] : c.http.types) {
    if (c.worker.exec.count(type) != 0 || type == "log") {
      throw ConfigError("handlers.http.types." + type + ": the type is also served by " +
                        (type == "log" ? std::string("the built-in log handler") : "worker.exec." + type));
    }
  }
  // ---- transport and secrets ----
  if (c.amqp_tls.cert_file.empty() != c.amqp_tls.key_file.empty()) {
    throw ConfigError("amqp.tls: cert_file and key_file go together (a client certificate and its key)");
  }
}

}  // namespace ripen
