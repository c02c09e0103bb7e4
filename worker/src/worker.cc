#include "ripen/worker.h"

#include <amqp.h>  // before amqp_framing.h, which needs its types
#include <amqp_framing.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_map>
#include <vector>

#include <spdlog/spdlog.h>

#include "ripen/amqp.h"
#include "ripen/backoff.h"
#include "ripen/failure_log.h"
#include "ripen/keys.h"
#include "ripen/redis.h"
#include "ripen/scripts.h"
#include "ripen/stored_task.h"
#include "ripen/topology.h"

namespace ripen {
namespace {

std::string default_name() {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  return std::string(host) + ":" + std::to_string(getpid());
}

// A delivery handed from the AMQP thread to a handler thread.
struct Job {
  uint64_t generation = 0;  // connection generation; tags are only valid on their own
  uint64_t tag = 0;
  std::string queue;  // the task queue name (not the AMQP name)
  std::string body;
  std::string message_id;
};

// What the AMQP thread does with a delivery once its handler thread is done.
struct Done {
  uint64_t generation = 0;
  uint64_t tag = 0;
  enum Action { ack, requeue, dead_letter } action = ack;
  std::string queue;
  std::string body;
  std::string message_id;
  AmqpTable headers;  // for dead letters: reason, error, attempts, worker
};

void wake(int fd) {
  uint64_t one = 1;
  [[maybe_unused]] auto n = write(fd, &one, sizeof one);
}

void drain(int fd) {
  uint64_t v;
  [[maybe_unused]] auto n = read(fd, &v, sizeof v);
}

}  // namespace

class Worker::Impl {
 public:
  Impl(const Config& config, std::string name, Clock& clock)
      : config_(config),
        clock_(clock),
        name_(field_safe(name.empty() ? default_name() : name)),  // stored in task records
        keys_(config.ns, config.shards),
        redis_url_(redis_url_of(config)),
        amqp_(amqp_url_of(config), std::chrono::seconds(5), clock),
        stop_fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)),
        done_fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}

  ~Impl() {
    close(stop_fd_);
    close(done_fd_);
  }

  void handle(const std::string& type, Handler h) { handlers_[type] = std::move(h); }

  void stop() {
    stopping_.store(true);
    wake(stop_fd_);
  }

  WorkerStats stats() const {
    std::lock_guard lock(stats_mu_);
    return stats_;
  }

  const std::string& name() const { return name_; }

  void run() {
    spdlog::info("worker {} starting: queues [{}], concurrency {}, handlers for [{}]", name_,
                 fmt::join(config_.worker.queues, ", "), config_.worker.concurrency, handler_names());
    std::vector<std::thread> pool;
    for (int i = 0; i < config_.worker.concurrency; ++i) pool.emplace_back([this] { handler_thread(); });
    FailureLog amqp_log(clock_);
    while (!stopping_.load()) {
      if (!amqp_.connected()) {
        if (auto st = connect(); !st) {
          amqp_log.fail(st.error().message);
          wait(std::chrono::milliseconds(250));
          continue;
        }
        amqp_log.ok("amqp");
      }
      settle_done();
      if (!consume_available()) continue;
      wait(std::chrono::milliseconds(500));
    }
    shutdown(pool);
  }

 private:
  // ---- connection ---------------------------------------------------------------

  std::string handler_names() const {
    std::string s;
    for (const auto& [type, h] : handlers_) s += (s.empty() ? "" : ", ") + type;
    return s;
  }

  Status connect() {
    if (auto st = amqp_.ensure_connected(); !st) return st;
    ++generation_;
    if (auto st = declare_exchanges(amqp_, keys_); !st) return st;
    // Prefetch = concurrency, shared by all consumers of the channel: the broker
    // never hands this worker more than it can run at once.
    if (auto st = amqp_.qos(static_cast<uint16_t>(config_.worker.concurrency)); !st) return st;
    consumer_tags_.clear();
    for (const auto& q : config_.worker.queues) {
      if (auto st = declare_queue(amqp_, keys_, q); !st) return st;
      auto tag = amqp_.consume(keys_.queue(q));
      if (!tag) return tag.error();
      consumer_tags_[*tag] = q;
    }
    spdlog::info("worker {}: consuming [{}]", name_, fmt::join(config_.worker.queues, ", "));
    return {};
  }

  // Reads deliveries the broker has sent. Returns false if the connection broke.
  bool consume_available() {
    while (amqp_.connected() && !stopping_.load()) {
      amqp_maybe_release_buffers(amqp_.raw());
      amqp_envelope_t env;
      timeval zero{0, 0};
      auto r = amqp_consume_message(amqp_.raw(), &env, &zero, 0);
      if (r.reply_type == AMQP_RESPONSE_NORMAL) {
        Job job;
        job.generation = generation_;
        job.tag = env.delivery_tag;
        auto it = consumer_tags_.find(to_string(env.consumer_tag));
        job.queue = it != consumer_tags_.end() ? it->second : "";
        job.body = to_string(env.message.body);
        if (env.message.properties._flags & AMQP_BASIC_MESSAGE_ID_FLAG) {
          job.message_id = to_string(env.message.properties.message_id);
        }
        amqp_destroy_envelope(&env);
        {
          std::lock_guard lock(jobs_mu_);
          jobs_.push_back(std::move(job));
        }
        jobs_cv_.notify_one();
        continue;
      }
      if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error == AMQP_STATUS_TIMEOUT) return true;
      if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
        // A frame that is not a delivery: the broker closing the channel, or
        // cancelling our consumer (queue deleted).
        amqp_frame_t frame;
        if (amqp_simple_wait_frame(amqp_.raw(), &frame) != AMQP_STATUS_OK) {
          (void)amqp_.fail(AMQP_STATUS_CONNECTION_CLOSED, "reading frames");
          return false;
        }
        if (frame.frame_type == AMQP_FRAME_METHOD && (frame.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD ||
                                                      frame.payload.method.id == AMQP_CONNECTION_CLOSE_METHOD ||
                                                      frame.payload.method.id == AMQP_BASIC_CANCEL_METHOD)) {
          amqp_rpc_reply_t reply{};
          reply.reply_type = AMQP_RESPONSE_SERVER_EXCEPTION;
          reply.reply = frame.payload.method;
          if (frame.payload.method.id == AMQP_BASIC_CANCEL_METHOD) {
            spdlog::warn("worker {}: the broker cancelled a consumer (queue deleted?); reconnecting", name_);
            amqp_.close();
          } else {
            spdlog::warn("worker {}: {}", name_, amqp_.check(reply, "consuming").error().message);
          }
          return false;
        }
        continue;
      }
      spdlog::warn("worker {}: {}", name_, amqp_.check(r, "consuming").error().message);
      return false;
    }
    return amqp_.connected();
  }

  void wait(std::chrono::milliseconds timeout) {
    if (amqp_.connected() && (amqp_frames_enqueued(amqp_.raw()) || amqp_data_in_buffer(amqp_.raw()))) return;
    pollfd fds[3] = {{stop_fd_, POLLIN, 0}, {done_fd_, POLLIN, 0}, {-1, POLLIN, 0}};
    if (amqp_.connected()) fds[2].fd = amqp_get_sockfd(amqp_.raw());
    poll(fds, 3, static_cast<int>(timeout.count()));
    if (fds[1].revents != 0) drain(done_fd_);
  }

  // Acks, requeues and dead-letters what the handler threads finished.
  void settle_done() {
    std::deque<Done> batch;
    {
      std::lock_guard lock(done_mu_);
      batch.swap(done_);
    }
    for (auto& d : batch) {
      // A delivery from a connection that has since broken is redelivered by the
      // broker; its tag means nothing on the new channel.
      if (d.generation != generation_ || !amqp_.connected()) continue;
      if (d.action == Done::dead_letter) {
        AmqpMessageProps props;
        props.message_id = d.message_id;
        props.headers = std::move(d.headers);
        if (auto st = amqp_.publish(keys_.dead_exchange(), d.queue, d.body, props, false); !st) {
          spdlog::warn("worker {}: dead-lettering {}: {}", name_, d.message_id, st.error().message);
          continue;
        }
      }
      Status st = d.action == Done::requeue ? amqp_.nack(d.tag, /*requeue=*/true) : amqp_.ack(d.tag);
      if (!st) spdlog::warn("worker {}: settling delivery: {}", name_, st.error().message);
    }
  }

  void finish_job(const Job& job, Done::Action action, AmqpTable headers = {}) {
    {
      std::lock_guard lock(done_mu_);
      done_.push_back({job.generation, job.tag, action, job.queue, action == Done::dead_letter ? job.body : "",
                       job.message_id, std::move(headers)});
    }
    wake(done_fd_);
  }

  // ---- handler threads ------------------------------------------------------------

  void handler_thread() {
    Redis redis(redis_url_, std::chrono::seconds(5), clock_);
    std::mt19937_64 rng{std::random_device{}()};
    while (true) {
      Job job;
      {
        std::unique_lock lock(jobs_mu_);
        jobs_cv_.wait(lock, [&] { return !jobs_.empty() || draining_; });
        if (jobs_.empty()) return;
        job = std::move(jobs_.front());
        jobs_.pop_front();
        ++running_;
      }
      process(redis, rng, job);
      {
        std::lock_guard lock(jobs_mu_);
        --running_;
      }
      jobs_cv_.notify_all();
    }
  }

  // Runs a Redis step, retrying briefly: a blip should not cost a redelivery.
  template <class F>
  auto with_retry(F&& f) -> decltype(f()) {
    auto r = f();
    for (int i = 0; i < 5 && !r && (r.error().code == Errc::unavailable || r.error().code == Errc::timeout); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100 << i));
      r = f();
    }
    return r;
  }

  void dead_letter(const Job& job, const std::string& reason, const std::string& error, int attempts) {
    finish_job(job, Done::dead_letter,
               {{"x-ripen-reason", reason},
                {"x-ripen-error", error},
                {"x-ripen-attempts", static_cast<int64_t>(attempts)},
                {"x-ripen-worker", name_}});
    std::lock_guard lock(stats_mu_);
    ++stats_.dead;
  }

  void process(Redis& redis, std::mt19937_64& rng, const Job& job) {
    {
      std::lock_guard lock(stats_mu_);
      ++stats_.received;
    }
    auto env = decode_envelope(job.body, static_cast<size_t>(config_.max_envelope_bytes));
    if (!env || env->id.empty()) {
      const std::string error = env ? "envelope has no id" : env.error().message;
      spdlog::error("worker {}: poison message {} on '{}': {}", name_, job.message_id, job.queue, error);
      dead_letter(job, "invalid envelope", error, 0);
      return;
    }
    const std::string& id = env->id;
    const int shard = keys_.shard_of(id);
    auto started = with_retry([&] {
      return redis.eval(scripts::start(), {keys_.status(shard), keys_.tasks(shard)},
                        {id, name_, keys_.shard_prefix(shard)});
    });
    if (!started) {
      spdlog::warn("worker {}: task {}: cannot record its start ({}); handing it back", name_, id,
                   started.error().message);
      finish_job(job, Done::requeue);
      return;
    }
    const std::string verdict = started->at(0).str();
    if (verdict == "skip") {
      spdlog::debug("worker {}: task {} already {}; duplicate delivery acked", name_, id, started->at(1).str());
      std::lock_guard lock(stats_mu_);
      ++stats_.duplicates;
      finish_job(job, Done::ack);
      return;
    }
    if (verdict == "missing") {
      spdlog::error("worker {}: task {} has no record (expired or another namespace); dead-lettering", name_, id);
      dead_letter(job, "no task record", "no record for task " + id + " in namespace " + config_.ns, 0);
      return;
    }
    const int attempt = static_cast<int>(started->at(1).integer());
    const int max_attempts = static_cast<int>(started->at(2).integer());
    const int64_t due_ms = started->at(3).integer();
    {
      std::lock_guard lock(stats_mu_);
      stats_.lateness.record(started->at(4).integer() - due_ms);
    }

    std::string error;
    bool permanent = false;
    auto handler = handlers_.find(env->type);
    if (handler == handlers_.end()) {
      error = "no handler for task type '" + env->type + "' on worker " + name_;
    } else {
      TaskContext ctx{*env,
                      id,
                      env->idempotency_key.empty() ? id : env->idempotency_key,
                      attempt,
                      due_ms,
                      env->timeout_ms,
                      clock_.now() + std::chrono::milliseconds(env->timeout_ms),
                      &stopping_};
      try {
        handler->second(ctx);
      } catch (const Permanent& e) {
        error = e.what();
        permanent = true;
      } catch (const std::exception& e) {
        error = e.what();
        if (error.empty()) error = "handler failed";
      } catch (...) {
        error = "handler threw a non-standard exception";
      }
    }

    std::string outcome = "ok";
    int64_t delay = 0;
    if (!error.empty()) {
      outcome = (permanent || attempt >= max_attempts) ? "dead" : "retry";
      std::uniform_real_distribution<double> uniform(0.0, 1.0);
      delay = backoff_ms(config_.retry_backoff, attempt, [&] { return uniform(rng); });
    }
    auto finished = with_retry([&] {
      return redis.eval(scripts::finish(), {keys_.status(shard), keys_.due(shard)},
                        {outcome, field_safe(error), std::to_string(delay), std::to_string(config_.record_retention_ms),
                         id, keys_.shard_prefix(shard), keys_.wake_channel(), std::to_string(shard)});
    });
    if (!finished) {
      // Not recorded, so not acked: the broker redelivers and the task runs again
      // (at-least-once; the idempotency key is what keeps side effects once).
      spdlog::error("worker {}: task {}: cannot record its outcome ({}); handing it back", name_, id,
                    finished.error().message);
      finish_job(job, Done::requeue);
      return;
    }
    if (outcome == "ok") {
      std::lock_guard lock(stats_mu_);
      ++stats_.succeeded;
      finish_job(job, Done::ack);
    } else if (outcome == "retry") {
      spdlog::warn("worker {}: task {} attempt {}/{} failed: {}; retry in {} ms", name_, id, attempt, max_attempts,
                   error, delay);
      std::lock_guard lock(stats_mu_);
      ++stats_.retried;
      finish_job(job, Done::ack);
    } else {
      spdlog::error("worker {}: task {} dead after attempt {}/{}: {}", name_, id, attempt, max_attempts, error);
      dead_letter(job, permanent ? "permanent failure" : "attempts exhausted", error, attempt);
    }
  }

  // ---- shutdown ---------------------------------------------------------------------

  void shutdown(std::vector<std::thread>& pool) {
    spdlog::info("worker {}: stopping; cancelling consumers", name_);
    for (const auto& [tag, q] : consumer_tags_) (void)amqp_.cancel(tag);
    std::deque<Job> unstarted;
    {
      std::lock_guard lock(jobs_mu_);
      unstarted.swap(jobs_);
      draining_ = true;
    }
    jobs_cv_.notify_all();
    for (const auto& job : unstarted) finish_job(job, Done::requeue);
    // Running handlers get the grace period; acks keep flowing meanwhile.
    const auto deadline = clock_.now() + std::chrono::milliseconds(config_.worker.shutdown_grace_ms);
    while (clock_.now() < deadline) {
      settle_done();
      {
        std::lock_guard lock(jobs_mu_);
        if (running_ == 0) break;
      }
      wait(std::chrono::milliseconds(50));
    }
    settle_done();
    bool idle = false;
    {
      std::lock_guard lock(jobs_mu_);
      idle = running_ == 0;
    }
    if (idle) {
      for (auto& t : pool) t.join();
    } else {
      // Handlers still running past the grace: their deliveries are unacked and
      // go back to the queue when the connection closes.
      spdlog::warn("worker {}: handlers still running after the grace period; their tasks will be redelivered", name_);
      for (auto& t : pool) t.detach();
    }
    amqp_.close();
    std::lock_guard lock(stats_mu_);
    spdlog::info("worker {} stopped: received={} succeeded={} retried={} dead={} duplicates={} lateness {}", name_,
                 stats_.received, stats_.succeeded, stats_.retried, stats_.dead, stats_.duplicates,
                 stats_.lateness.summary());
  }

  Config config_;
  Clock& clock_;
  std::string name_;
  Keys keys_;
  RedisUrl redis_url_;
  Amqp amqp_;
  int stop_fd_;
  int done_fd_;
  std::atomic<bool> stopping_{false};
  std::unordered_map<std::string, Handler> handlers_;
  std::unordered_map<std::string, std::string> consumer_tags_;  // tag -> task queue
  uint64_t generation_ = 0;

  std::mutex jobs_mu_;
  std::condition_variable jobs_cv_;
  std::deque<Job> jobs_;
  int running_ = 0;
  bool draining_ = false;

  std::mutex done_mu_;
  std::deque<Done> done_;

  mutable std::mutex stats_mu_;
  WorkerStats stats_;
};

Worker::Worker(const Config& config, std::string name, Clock& clock)
    : impl_(std::make_unique<Impl>(config, std::move(name), clock)) {}
Worker::~Worker() = default;
void Worker::handle(const std::string& type, Handler handler) { impl_->handle(type, std::move(handler)); }
void Worker::run() { impl_->run(); }
void Worker::stop() { impl_->stop(); }
WorkerStats Worker::stats() const { return impl_->stats(); }
const std::string& Worker::name() const { return impl_->name(); }

}  // namespace ripen
