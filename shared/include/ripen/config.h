// ripen's configuration: defaults, then a TOML file (--config or RIPEN_CONFIG),
// then RIPEN_* environment variables, then each binary's flags. Everything is
// checked at start: an unknown key or a bad value is a ConfigError naming the key.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "ripen/backoff.h"
#include "ripen/breaker_policy.h"

namespace ripen {

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct DispatcherConfig {
  int batch = 500;                     // tasks per claim
  int confirm_window = 1000;           // claimed tasks published and not yet confirmed
  int bundle = 50;                     // most tasks per broker message (1: one message each)
  int64_t tick_ms = 1;                 // at most one claim round per tick (0: no limit)
  int64_t inflight_lease_ms = 30'000;  // a claimed task not confirmed by then is published again
  int64_t shard_lease_ms = 4'000;      // a dead dispatcher's shards are free after this
  // A published task neither started nor ended this long after its confirm, or
  // a run this long past its lease, is presumed lost with its message (a purged
  // queue, a lost node) and published again, once its queue has no backlog.
  int64_t lost_after_ms = 300'000;
  int64_t max_poll_ms = 1000;  // longest sleep without looking at the wheel
  // Declare a queue the first time a task names it: only a configured one
  // (configured_queues(); "configured", true in a file), any ("any": for
  // producers that are all trusted, since each new name makes a durable queue
  // and its dead-letter queue), or none (false).
  enum class AutoDeclare { none, configured, any } auto_declare = AutoDeclare::configured;
  std::vector<std::string> queues = {"default"};  // declared at start
  bool ingress = true;                            // consume the AMQP ingress (keys.h: <ns>.ingress)
  int ingress_prefetch = 256;                     // ingress messages taken at once, and enqueued in one round trip
};

// One consumed queue's settings ([worker.queue.<name>]); a table for a queue
// this worker does not consume is ignored (one file can serve several workers).
struct QueueSettings {
  int weight = 1;       // its share of the prefetch while several queues have work
  int concurrency = 0;  // most of its tasks started at once on this worker; 0 = worker.concurrency's bound only
};

// ---- exec hygiene (worker.exec_env, [worker.exec_limits.<type>]) ----------------
// What an exec type's command runs as and within. Each limit is applied with
// setrlimit in the child before it execs; 0 leaves the worker's own.
struct ExecLimits {
  std::string user;         // run as this user (its uid, and its gid unless `group`); "": the worker's
  std::string group;        // run with this group; "": the user's, or the worker's
  int64_t cpu_seconds = 0;  // RLIMIT_CPU
  int64_t memory_mb = 0;    // RLIMIT_AS, MiB
  int64_t open_files = 0;   // RLIMIT_NOFILE
  int64_t processes = 0;    // RLIMIT_NPROC (counted per user: best with `user`)
};

struct WorkerConfig {
  std::vector<std::string> queues = {"default"};
  int concurrency = 4;  // handlers running at once
  int prefetch = 0;  // unacked deliveries the broker may hand over, all queues together; 0 = auto (see auto_prefetch())
  // Tasks whose start is recorded, waiting for a handler thread. 0: as many as
  // keep the handlers busy for about a second at their recent pace (at least
  // concurrency, at most 1024), so a task never waits long with its run lease
  // ticking. The rest of what was delivered waits unstarted.
  int local_queue = 0;
  // Hand back to their queue, for a worker with a free handler, tasks that
  // found no room to start here (see hand_back() in worker.cc). Off by
  // default: when every worker of a burst is as busy, the tasks sent back and
  // forth only arrive later (320 tasks of 0.25 s on 4 workers: 1.31x the ideal
  // makespan against 1.01x without); it helps where load is uneven.
  bool hand_back = false;
  std::map<std::string, QueueSettings> queue;
  std::map<std::string, std::string> exec;  // task type -> command run by the exec handler
  int64_t exec_timeout_ms = 60'000;
  // The worker's environment variables an exec command sees (a trailing '*'
  // matches a prefix), besides the RIPEN_TASK_* ones: not the worker's
  // credentials (RIPEN_REDIS_URL, RIPEN_AMQP_URL).
  std::vector<std::string> exec_env = {"PATH", "HOME", "LANG", "LC_*", "TZ", "TMPDIR"};
  std::map<std::string, ExecLimits> exec_limits;  // by exec task type
  // The most a task's own timeout_ms may ask for (clamped, not refused) unless
  // its type sets max_timeout: a task's envelope must not hold a run lease, or
  // a worker's handler, for days.
  int64_t max_task_timeout_ms = 3600LL * 1000;
  int64_t shutdown_grace_ms = 30'000;
  // A started run holds its task against a redelivery for its time limit plus
  // this (see worker.h); after a worker dies, its tasks run again elsewhere then.
  int64_t lease_grace_ms = 30'000;
  // A task of a type this worker has no handler for goes back to the wheel (for
  // a worker that has one) until this worker has met it unserved for this long;
  // then it is dead-lettered.
  int64_t unknown_type_grace_ms = 300'000;
};

// How runs of one task type may overlap, across the whole fleet.
enum class Blocking {
  concurrent,       // any number at once (the default)
  serial,           // one at a time; the others wait their turn, earliest due first
  discard_if_busy,  // one at a time; a task that comes while one runs is not run, and ends `discarded`
};

// One task type's settings ([types.<type>]); each unset one falls back to the
// fleet-wide setting. A task's own envelope fields win over both.
struct TaskTypeConfig {
  Blocking blocking = Blocking::concurrent;
  int max_attempts = 0;                       // 0: default_max_attempts
  std::optional<BackoffPolicy> retry;         // retry_base / retry_cap; unset: [retry]
  int64_t timeout_ms = 0;                     // a run's time limit; 0: worker.exec_timeout
  int64_t max_timeout_ms = 0;                 // the most a task's own timeout_ms may ask; 0: worker.max_task_timeout
  std::vector<std::string> permanent_errors;  // a failure with this code, or whose message contains one, is not retried
};

// ---- the http handler ([handlers.http]) -------------------------------------------
// Off unless configured: a worker serves http tasks only of the types listed
// under [handlers.http.types], each only to URLs under one of its prefixes.
struct HttpHandlerConfig {
  // Task type -> allowed URL prefixes ("https://api.example.com/v1/"): scheme,
  // host and port equal, path under the prefix's path (whole segments).
  std::map<std::string, std::vector<std::string>> types;
  // Addresses that are loopback, link-local, private, CGNAT, ULA, multicast or
  // unspecified are refused after DNS resolution unless allow_private, or one
  // of allow_networks (CIDRs, e.g. "10.1.0.0/16", "::1/128") holds them.
  bool allow_private = false;
  std::vector<std::string> allow_networks;
  int64_t max_response_bytes = 1024 * 1024;  // a longer response body fails the task
  int64_t low_speed_bytes = 1;               // abort when slower than this (bytes/s) ...
  int64_t low_speed_time_ms = 30'000;        // ... for this long
};

// What the AMQP ingress accepts ([ingress]); docs/security.md has the trust
// model. A message that breaks a rule is refused to the ingress dead-letter
// queue with the rule's name.
struct IngressPolicy {
  // Queues a message may name. Empty: the configured queues (configured_queues()); ["*"]: any.
  std::vector<std::string> allowed_queues;
  // Task types a message may name. Empty or ["*"]: any.
  std::vector<std::string> allowed_types;
  // When not empty ([ingress.users]): who may enqueue, by the message's user_id
  // property (RabbitMQ refuses a message whose user_id is not its connection's
  // user), each with the task types it may enqueue (["*"]: any allowed type).
  // A message without user_id, or from a user not listed, is refused.
  std::map<std::string, std::vector<std::string>> users;
  // A reply is sent only to RabbitMQ's direct reply-to (amq.rabbitmq.reply-to)
  // or a queue whose name starts with this ("": none): reply_to is never a way
  // to publish into another queue of the vhost.
  std::string reply_to_prefix;
  // The ingress dead-letter queue's bound (x-max-length-bytes, overflow
  // reject-publish): once full, refused messages are dropped, logged, counted.
  int64_t dead_letter_max_bytes = 256LL * 1024 * 1024;
  // An oversize refused message is kept in it as its first this many bytes.
  int64_t dead_letter_body_bytes = 4096;
};

// ---- transport and secrets -------------------------------------------------

// TLS to RabbitMQ ([amqp.tls]); used when amqp_url is amqps://.
struct AmqpTlsConfig {
  std::string ca_file;    // PEM CA certificates the broker's must chain to; empty: the system's trust store
  std::string cert_file;  // client certificate (PEM chain), for a broker that asks for one; needs key_file
  std::string key_file;   // its private key (PEM, unencrypted)
  bool verify = true;     // check the broker's chain and that it names the URL's host; off only for tests
};

struct Config {
  std::string redis_url = "redis://127.0.0.1:6379/0";
  std::string amqp_url = "amqp://guest:guest@127.0.0.1:5672/%2f";
  std::string ns = "ripen";  // "namespace" in files and RIPEN_NAMESPACE
  int shards = 16;
  int64_t max_envelope_bytes = 256 * 1024;
  int default_max_attempts = 3;
  BackoffPolicy retry_backoff;
  // How long a finished task's compact record (~250 bytes) stays readable by
  // `ripen status`. An hour at 1,000 tasks/s is ~0.9 GB of Redis memory.
  int64_t record_retention_ms = 3600LL * 1000;
  // How long a succeeded task's idempotency key stays taken: enqueueing the key
  // again meanwhile returns that task instead of adding one. 0: freed when the
  // task ends.
  int64_t idempotency_retention_ms = 24LL * 3600 * 1000;
  // How long a worker or dispatcher waits at start for Redis to answer before
  // it takes any work from RabbitMQ; past it, it exits (kExitRedisUnreachable).
  // 0: one attempt.
  int64_t redis_startup_timeout_ms = 30'000;
  std::string log_level = "info";
  std::string log_format = "text";  // text | json
  DispatcherConfig dispatcher;
  IngressPolicy ingress;
  WorkerConfig worker;
  // Circuit breaker thresholds by downstream ([breakers.<name>]); "default"
  // serves every downstream without its own, and each table starts from it.
  std::map<std::string, BreakerPolicy> breakers;
  std::map<std::string, TaskTypeConfig> types;  // by task type
  HttpHandlerConfig http;                       // [handlers.http]

  // ---- transport and secrets ----
  AmqpTlsConfig amqp_tls;
  // Files holding the Redis / AMQP password (a trailing newline is dropped):
  // read at start by load_config, so no password need be on a command line.
  std::string redis_password_file;
  std::string amqp_password_file;
  // The passwords that replace the URLs' own when set: from the files above,
  // or from RIPEN_REDIS_PASSWORD / RIPEN_AMQP_PASSWORD (which win over a file).
  std::optional<std::string> redis_password;
  std::optional<std::string> amqp_password;
};

// The --redis-url / --amqp-url help every binary shows: a password given there
// shows in ps, so each names where else it can come from.
inline constexpr const char* kRedisUrlHelp =
    "redis://[[user]:password@]host:port/db (default: $RIPEN_REDIS_URL; a password here shows in ps: use "
    "RIPEN_REDIS_PASSWORD_FILE)";
inline constexpr const char* kAmqpUrlHelp =
    "amqp[s]://user:pass@host:port/vhost (default: $RIPEN_AMQP_URL; a password here shows in ps: use "
    "RIPEN_AMQP_PASSWORD_FILE)";

using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;
EnvLookup process_env();

// Reads the TOML file at `path` (if given) over the defaults, then the environment,
// then the password files (read_password_files). Throws ConfigError with the
// file, key and reason.
Config load_config(const std::optional<std::string>& path, const EnvLookup& env = process_env());
void apply_toml(Config& config, const std::string& toml_text, const std::string& source_name);
void apply_env(Config& config, const EnvLookup& env);
// The queues this configuration names: dispatcher.queues, worker.queues, the
// [worker.queue.<name>] tables and ingress.allowed_queues (but "*"), sorted.
std::vector<std::string> configured_queues(const Config& config);

// Sets redis_password / amqp_password from redis_password_file /
// amqp_password_file, unless already set (from the environment). An unreadable
// file is a ConfigError naming the key and the path, never the content.
void read_password_files(Config& config);
// Checks cross-field rules and URL syntax. Throws ConfigError.
void validate_config(const Config& config);

}  // namespace ripen
