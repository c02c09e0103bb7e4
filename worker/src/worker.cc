#include "ripen/worker.h"

#include <amqp.h>  // before amqp_framing.h, which needs its types
#include <amqp_framing.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <unordered_map>
#include <vector>

#include <spdlog/spdlog.h>

#include "ripen/ack_ledger.h"
#include "ripen/admission.h"
#include "ripen/amqp.h"
#include "ripen/backoff.h"
#include "ripen/breaker.h"
#include "ripen/breaker_registry.h"
#include "ripen/delivery_stage.h"
#include "ripen/failure_log.h"
#include "ripen/http_handler.h"
#include "ripen/keys.h"
#include "ripen/publisher.h"
#include "ripen/redis.h"
#include "ripen/retry.h"
#include "ripen/scripts.h"
#include "ripen/stored_task.h"
#include "ripen/topology.h"
#include "ripen/untrusted.h"

namespace ripen {
namespace {

std::string default_name() {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  return std::string(host) + ":" + std::to_string(getpid());
}

// One task of a delivery, from the moment it is read off the channel until it
// is recorded, dead-lettered or given back. A delivery holds one task, or a
// bundle of tasks that ripened together (envelope.h); it is acked once all of
// its tasks are done with.
struct Delivery {
  DeliveryStage stage = DeliveryStage::received;  // moved only by move() (delivery_stage.h)
  uint64_t generation = 0;                        // connection generation; tags are only valid on their own
  uint64_t tag = 0;
  uint64_t run = 0;   // unique among this worker's deliveries: names its run in the STATUS
  std::string queue;  // the task queue name (not the AMQP name)
  std::string body;   // this task's envelope JSON as received; empty for a bundle's (encoded when needed)
  std::string message_id;
  Envelope task;
  std::string payload_digest;  // of its payload as the TASK stores it: its start checks it (start.lua)
  int attempt = 0;
  int max_attempts = 0;
  int64_t due_ms = 0;
  std::string downstream;          // its breaker's name; empty: none
  bool permit = false;             // the downstream's breaker let it through: report how it went
  bool gated = false;              // holds its type's lock (blocking serial / discard_if_busy): give it back when done
  bool admitted = false;           // counted among the tasks started here (see admit())
  Clock::time_point started_at{};  // when its start (or its lease's renewal) was recorded, by this worker's clock
  bool renewing = false;           // its start is asked again to renew its lease: it runs next
  Clock::time_point arrived{};     // when it was read off the channel
  bool handed_back = false;        // a copy another worker handed back (or ours was refused): kept here
  bool in_doubt = false;           // its start or gate was sent in a round trip whose replies were lost
  int priority = 0;                // its message's priority
};

// A handler run that ended, on its way back to the I/O thread.
struct Ran {
  Delivery delivery;
  std::string error;  // empty: success
  std::string code;   // the handler's error code (ripen::Failure), if any
  bool permanent = false;
  bool not_run = false;      // the worker began to stop before it started: give it back
  bool stale_lease = false;  // it waited for a handler thread too long: renew its run lease first
  Millis took{0};            // how long the handler ran
  int64_t held_ms = -1;      // >= 0: its downstream's breaker held it back for this long; it did not run
  bool no_handler = false;   // this worker has no handler for its type; it did not run
};

// A finish waiting to be recorded in Redis.
struct Finish {
  Delivery delivery;
  scripts::FinishOutcome outcome = scripts::FinishOutcome::ok;
  std::string error;
  std::string code;  // the handler's error code, for the dead letter
  int64_t delay_ms = 0;
  std::string dead_reason;  // outcome dead: why, for the dead letter
};

// What a dead-letter copy is for, once the broker confirms it.
enum class AfterCopy {
  finish,  // a run that ended dead: record it, then ack
  ack,     // a message that has no task to record (poison, no record): ack it
};

// A dead-letter copy on its way to the broker. The delivery is acked only once
// the broker confirms the copy, and a dead run is recorded as dead only then:
// a crash or a lost connection in between hands the delivery on rather than
// losing the task's last trace.
struct DeadCopy {
  Delivery delivery;
  AmqpMessageProps props;
  AfterCopy then = AfterCopy::ack;
  Finish finish;  // then == finish
};

// A task that found no room to start here for this long stops its queue's
// consumer here, and is handed back to its queue for a worker with a free
// handler (see hand_back()).
constexpr auto kHandBackAfter = std::chrono::milliseconds(200);
// The message header that marks a handed-back copy: whoever gets it keeps it.
constexpr std::string_view kHandedBackHeader = "x-ripen-handed-back";

// How long an outcome may wait to be recorded with others, and how many make
// a round trip worth it at once (see run()).
constexpr auto kFinishDelay = std::chrono::milliseconds(2);
constexpr size_t kFinishBatch = 256;

// How often a worker publishes its breakers and reads which downstreams another
// worker of the fleet has opened.
constexpr auto kBreakerSync = std::chrono::seconds(1);
// How long the fleet may see a worker's breakers after it last published them.
constexpr int64_t kBreakerSnapshotTtlMs = 30'000;
// How soon a task no handler here serves is first published again.
constexpr auto kUnhandledRecheck = std::chrono::milliseconds(1000);
// How often a delivery whose task runs elsewhere looks at it again.
constexpr auto kBusyRecheck = std::chrono::milliseconds(1000);
// How often a task of a serial type waiting its turn asks again, and how long
// its place in the line holds if it stops asking (its worker died).
constexpr auto kGateRecheck = std::chrono::milliseconds(20);
constexpr int64_t kGatePlaceMs = 10'000;
// How often a worker that lost Redis asks whether it answers again.
constexpr auto kRedisProbe = std::chrono::milliseconds(250);

// Moves a delivery's task to its next stage, as delivery_stage.h allows. Any
// other move is a bug in the loop that would lose or duplicate a task's
// handling: stop loudly rather than go on.
void move(Delivery& d, DeliveryStage next) {
  if (!delivery_may_move(d.stage, next)) {
    spdlog::critical("task {}: its delivery cannot move from {} to {}; stopping", d.task.id, to_string(d.stage),
                     to_string(next));
    std::abort();
  }
  d.stage = next;
}

void wake(int fd) {
  uint64_t one = 1;
  [[maybe_unused]] auto n = write(fd, &one, sizeof one);
}

void drain(int fd) {
  uint64_t v;
  [[maybe_unused]] auto n = read(fd, &v, sizeof v);
}

}  // namespace

// One I/O thread owns the AMQP channel and a Redis connection; handler threads
// only run handlers. Every Redis write the worker makes (a run starts, a run
// ended) is gathered by the I/O thread and sent in one pipelined round trip per
// loop, one script call per shard: under load many tasks share a round trip,
// which is what lets a worker keep up with the broker. A delivery is acked only
// after the outcome of its run is recorded.
class Worker::Impl {
 public:
  Impl(const Config& config, const std::string& name, Clock& clock)
      : config_(config),
        clock_(clock),
        name_(field_safe(name.empty() ? default_name() : name)),  // stored in task records
        keys_(config.ns, config.shards),
        redis_(redis_url_of(config), std::chrono::seconds(5), clock),
        amqp_(amqp_url_of(config), std::chrono::seconds(5), clock),
        publisher_(amqp_url_of(config), clock),
        stop_fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)),
        done_fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)),
        rng_(std::random_device{}()),
        breakers_(config.breakers, clock, http_known_downstreams(config.http)) {}

  ~Impl() {
    close(stop_fd_);
    close(done_fd_);
  }

  void handle(const std::string& type, Handler h) { handlers_[type] = std::move(h); }

  void stop() {
    stopping_.store(true);
    wake(stop_fd_);
  }

  void abandon() {
    abandon_.store(true);
    stop();
  }

  bool abandoned() const { return abandoned_.load(); }

  WorkerStats stats() const {
    std::lock_guard lock(stats_mu_);
    return stats_;
  }

  const std::string& name() const { return name_; }

  void run() {
    spdlog::info("worker {} starting: queues [{}], concurrency {}, prefetch {}, handlers for [{}]", name_,
                 fmt::join(config_.worker.queues, ", "), config_.worker.concurrency,
                 config_.worker.prefetch > 0 ? std::to_string(config_.worker.prefetch) : "auto", handler_names());
    // Redis before the broker: a worker that cannot record a start would take
    // deliveries and sit on them (RedisUnreachable past the bound).
    if (!await_redis(redis_, Millis(config_.redis_startup_timeout_ms), stopping_, "worker " + name_, clock_)) {
      spdlog::info("worker {} stopped before Redis answered", name_);
      return;
    }
    std::vector<std::thread> pool;
    pool.reserve(static_cast<size_t>(config_.worker.concurrency));
    for (int i = 0; i < config_.worker.concurrency; ++i) pool.emplace_back([this] { handler_thread(); });
    while (!stopping_.load()) {
      if (!amqp_.connected()) {
        if (auto st = connect(); !st) {
          amqp_log_.fail(st.error().message);
          // The broker is away, Redis need not be: the outcomes of runs that
          // end meanwhile are recorded now. Waiting for the broker would let
          // their run leases pass, and their redelivered copies would run
          // them again. (Their acks are moot: the broker hands the deliveries
          // on, and their starts find the tasks ended.)
          collect_ran();
          (void)record();
          wait(std::chrono::milliseconds(250));
          continue;
        }
        amqp_log_.ok("amqp");
      }
      read_deliveries();
      collect_copies();
      collect_ran();
      if (redis_down_ && !redis_back()) {
        // Nothing can start: what arrived meanwhile goes back at once.
        requeue_unstarted(/*keep_in_doubt=*/true);
        flush_acks();
        wait(std::chrono::milliseconds(250));
        continue;
      }
      retry_busy();
      sync_breakers();
      if (!record_gates()) {
        redis_trouble();
        wait(std::chrono::milliseconds(100));
        continue;
      }
      admit();
      hand_back();
      resume_consumers();
      adapt_prefetch();
      // A start is recorded at once (the handler waits for it). Outcomes wait
      // up to kFinishDelay for company, unless a start goes anyway: nothing is
      // late for it, and under moderate load it makes one round trip and one
      // ack of what would have been several.
      const auto now = clock_.now();
      const bool finishes_due = !finishing_.empty() && (!starting_.empty() || finishing_.size() >= kFinishBatch ||
                                                        now >= first_finish_ + kFinishDelay);
      const bool recorded = record(finishes_due);
      flush_acks();
      if (!recorded) {
        // Redis is unreachable: what waits to be recorded stays; try again soon.
        redis_trouble();
        wait(std::chrono::milliseconds(100));
        continue;
      }
      auto sleep = std::chrono::milliseconds(500);
      if (!finishing_.empty()) sleep = std::chrono::ceil<Millis>(first_finish_ + kFinishDelay - clock_.now());
      if (!busy_.empty()) sleep = std::min(sleep, std::chrono::ceil<Millis>(busy_.begin()->first - clock_.now()));
      if (!waiting_.empty()) {
        sleep = std::min(sleep, std::chrono::ceil<Millis>(waiting_.begin()->first - clock_.now()));
      }
      admit();  // outcomes just recorded made room
      if (!starting_.empty() || !gating_.empty() || !ungating_.empty()) sleep = Millis(0);
      if (!admitting_.empty()) sleep = std::min<Millis>(sleep, kHandBackAfter);
      // Copies the broker has not taken yet are tried again soon.
      if (!copy_again_.empty()) sleep = std::min(sleep, Millis(200));
      wait(std::max(sleep, Millis(0)));
    }
    shutdown(pool);
  }

 private:
  // worker.prefetch, else what auto_prefetch() last asked for (see adapt_prefetch()).
  int prefetch() const { return config_.worker.prefetch > 0 ? config_.worker.prefetch : auto_prefetch_; }

  int wanted_prefetch() const {
    return auto_prefetch(config_.worker.concurrency, handler_ms_, tasks_per_message_, kHandBackAfter);
  }

  // With worker.prefetch = 0 the prefetch follows the handlers' pace: a worker
  // of fast handlers with a prefetch of one message each would leave them idle
  // through every start's and outcome's round trip (one message per task ran at
  // a fifth of the broker's rate that way), and one of slow handlers with a
  // deep prefetch would hold a burst that other workers could be running. The
  // broker applies basic.qos to consumers as they start, so a prefetch that
  // moved 2x or more starts each consuming queue's consumer again; what the old
  // one holds unacked stays with this channel.
  void adapt_prefetch() {
    if (config_.worker.prefetch > 0 || !amqp_.connected() || stopping_.load()) return;
    const int wanted = wanted_prefetch();
    if (!prefetch_moved(auto_prefetch_, wanted)) return;
    spdlog::debug("worker {}: prefetch {} -> {} (handlers {:.3f} ms, {:.1f} tasks a message)", name_, auto_prefetch_,
                  wanted, handler_ms_, tasks_per_message_);
    auto_prefetch_ = wanted;
    std::vector<std::string> queues;
    for (const auto& [queue, tag] : consuming_) queues.push_back(queue);
    for (const auto& q : queues) {
      pause_consumer(q);
      if (consuming_.count(q) != 0) return;  // the connection broke: connect() consumes again
      if (auto st = consume(q); !st) {
        amqp_log_.fail(st.error().message);
        return;
      }
    }
  }

  const QueueSettings& queue_settings(const std::string& queue) const {
    static const QueueSettings defaults;
    auto it = config_.worker.queue.find(queue);
    return it == config_.worker.queue.end() ? defaults : it->second;
  }

  // A queue's share of the prefetch, by weight: at least one delivery.
  int prefetch_share(const std::string& queue) const {
    int total = 0;
    for (const auto& q : config_.worker.queues) total += queue_settings(q).weight;
    const int64_t share = (static_cast<int64_t>(prefetch()) * queue_settings(queue).weight + total - 1) / total;
    return static_cast<int>(std::clamp<int64_t>(share, 1, prefetch()));
  }

  std::string handler_names() const {
    std::string s;
    for (const auto& [type, h] : handlers_) s += (s.empty() ? "" : ", ") + type;
    return s;
  }

  // ---- AMQP ---------------------------------------------------------------------

  Status connect() {
    if (auto st = amqp_.ensure_connected(); !st) return st;
    ++generation_;
    acks_.reset();
    if (config_.worker.prefetch == 0) auto_prefetch_ = wanted_prefetch();
    if (auto st = declare_exchanges(amqp_, keys_); !st) return st;
    // Each queue's consumer gets its weighted share of the prefetch (RabbitMQ
    // applies basic.qos per consumer): the broker hands this worker about
    // `prefetch` unacked deliveries in all, and while several queues have work
    // they are shared out by weight. Not a channel-wide limit: quorum queues
    // refuse consumers on a channel with one.
    consumer_tags_.clear();
    consuming_.clear();
    for (const auto& q : config_.worker.queues) {
      if (auto st = declare_queue(amqp_, keys_, q); !st) return st;
      if (redis_down_) continue;  // redis_back() consumes
      if (auto st = consume(q); !st) return st;
    }
    if (redis_down_) {
      spdlog::warn("worker {}: connected to the broker; not consuming until Redis answers", name_);
    } else {
      spdlog::info("worker {}: consuming [{}]", name_, fmt::join(config_.worker.queues, ", "));
    }
    return {};
  }

  Status consume(const std::string& queue) {
    if (auto st = amqp_.qos(static_cast<uint16_t>(prefetch_share(queue))); !st) return st;
    auto tag = amqp_.consume(keys_.queue(queue));
    if (!tag) return tag.error();
    consumer_tags_[*tag] = queue;
    consuming_[queue] = *tag;
    return {};
  }

  // A queue whose tasks found no room here stops sending this worker more
  // (its consumer is cancelled; what it holds unacked stays) until they have
  // all found room: the broker counts messages, not tasks, so a worker with
  // prefetch to spare but no free handler would otherwise go on taking
  // messages another worker could start at once.
  void pause_consumer(const std::string& queue) {
    auto it = consuming_.find(queue);
    if (it == consuming_.end()) return;
    if (auto st = amqp_.cancel(it->second); !st) return;  // the connection broke: connect() consumes again
    consuming_.erase(it);
    spdlog::debug("worker {}: no room for more of queue '{}'; not consuming it for now", name_, queue);
  }

  // Consumes again, once a handler is free, each queue none of whose tasks waits
  // here for room: so a worker that consumes a queue is one that can start
  // more of it (what hand_back() counts on).
  void resume_consumers() {
    if (stopping_.load() || redis_down_ || !amqp_.connected() || consuming_.size() == config_.worker.queues.size()) {
      return;
    }
    if (admitted_ >= config_.worker.concurrency) return;
    for (const auto& q : config_.worker.queues) {
      if (consuming_.count(q) != 0 || admitting_.count(q) != 0) continue;
      if (auto st = consume(q); !st) {
        amqp_log_.fail(st.error().message);
        return;
      }
    }
  }

  // Reads every delivery the broker has sent, without waiting.
  void read_deliveries() {
    while (amqp_.connected() && !stopping_.load()) {
      amqp_maybe_release_buffers(amqp_.raw());
      amqp_envelope_t env;
      timeval zero{0, 0};
      auto r = amqp_consume_message(amqp_.raw(), &env, &zero, 0);
      if (r.reply_type == AMQP_RESPONSE_NORMAL) {
        Delivery d;
        d.generation = generation_;
        d.tag = env.delivery_tag;
        auto it = consumer_tags_.find(
            std::string_view(static_cast<const char*>(env.consumer_tag.bytes), env.consumer_tag.len));
        d.queue = it != consumer_tags_.end() ? it->second : "";
        d.body = to_string(env.message.body);
        if (env.message.properties._flags & AMQP_BASIC_MESSAGE_ID_FLAG) {
          d.message_id = to_string(env.message.properties.message_id);
        }
        if (env.message.properties._flags & AMQP_BASIC_HEADERS_FLAG) {
          d.handed_back = !amqp_header_string(env.message.properties.headers, kHandedBackHeader).empty();
        }
        if (env.message.properties._flags & AMQP_BASIC_PRIORITY_FLAG) d.priority = env.message.properties.priority;
        amqp_destroy_envelope(&env);
        accept(std::move(d));
        continue;
      }
      if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error == AMQP_STATUS_TIMEOUT) return;
      if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
        // A frame that is not a delivery: the broker closing the channel, or
        // cancelling our consumer (queue deleted).
        amqp_frame_t frame;
        if (amqp_simple_wait_frame(amqp_.raw(), &frame) != AMQP_STATUS_OK) {
          (void)amqp_.fail(AMQP_STATUS_CONNECTION_CLOSED, "reading frames");
          return;
        }
        if (auto closed = amqp_.closed_by(frame, "consuming")) {
          spdlog::warn("worker {}: {}; reconnecting", name_, closed->message);
          return;
        }
        continue;
      }
      spdlog::warn("worker {}: {}", name_, amqp_.check(r, "consuming").error().message);
      return;
    }
  }

  // A new delivery: its tasks wait for their starts to be recorded; a poison
  // message (or a bundle's poison element) is dead-lettered at once.
  void accept(Delivery d) {
    auto tasks = decode_message(d.body, static_cast<size_t>(config_.max_envelope_bytes));
    if (!tasks) {
      acks_.open(d.tag, 1);
      count_received(1);
      poison(d, tasks.error().message);
      return;
    }
    acks_.open(d.tag, tasks->size());
    count_received(tasks->size());
    tasks_per_message_ += 0.2 * (static_cast<double>(tasks->size()) - tasks_per_message_);
    const bool bundle = is_bundle(d.body);
    for (auto& t : *tasks) {
      Delivery one;
      one.generation = d.generation;
      one.tag = d.tag;
      one.run = ++runs_;
      one.queue = d.queue;
      one.message_id = d.message_id;
      one.arrived = clock_.now();
      one.handed_back = d.handed_back;
      one.priority = d.priority;
      if (!bundle) one.body = std::move(d.body);
      if (!t.envelope || t.envelope->id.empty()) {
        if (bundle) one.body = std::move(t.text);
        poison(one, t.envelope ? "envelope has no id" : t.envelope.error().message);
        continue;
      }
      one.task = std::move(*t.envelope);
      one.payload_digest = payload_digest(encode_payload(one.task.payload));
      one.downstream = downstream_of(one.task);
      if (!one.downstream.empty()) meet(one.downstream);
      to_start(std::move(one));
    }
  }

  // ---- run leases ---------------------------------------------------------------------

  // How long a started run of `task` holds it against a redelivery: its time
  // limit and a grace. A run that outlives its lease (a handler ignoring its
  // deadline) can see a second run start: effectively-once holds for handlers
  // that finish within their lease.
  int64_t run_lease_ms(const Envelope& task) const { return timeout_ms(task) + config_.worker.lease_grace_ms; }

  int64_t timeout_ms(const Envelope& task) const { return run_timeout_ms(config_, task.type, task.timeout_ms); }

  RetryPolicy retry_policy(const std::string& task_type) const {
    RetryPolicy p;
    p.backoff = config_.retry_backoff;
    auto type = config_.types.find(task_type);
    if (type != config_.types.end()) {
      if (type->second.retry) p.backoff = *type->second.retry;
      p.permanent_errors = type->second.permanent_errors;
    }
    return p;
  }

  // Deliveries whose task was busy elsewhere try their start again once the
  // other run's lease has passed (or it ended: the start then says skip). They
  // stay unacked meanwhile: if this worker dies, the broker hands them on.
  void retry_busy() {
    const auto now = clock_.now();
    while (!busy_.empty() && busy_.begin()->first <= now) {
      to_start(std::move(busy_.begin()->second));
      busy_.erase(busy_.begin());
    }
    while (!waiting_.empty() && waiting_.begin()->first <= now) {
      Delivery& d = waiting_.begin()->second;
      move(d, DeliveryStage::gating);
      gating_.push_back(std::move(d));
      waiting_.erase(waiting_.begin());
    }
  }

  // ---- blocking policies ----------------------------------------------------------------

  Blocking blocking_of(const std::string& type) const {
    auto it = config_.types.find(type);
    return it == config_.types.end() ? Blocking::concurrent : it->second.blocking;
  }

  // A delivery's next step: its start, or first its type's gate.
  void to_start(Delivery d) {
    if (!d.gated && blocking_of(d.task.type) != Blocking::concurrent) {
      move(d, DeliveryStage::gating);
      gating_.push_back(std::move(d));
    } else {
      move(d, DeliveryStage::admitting);
      admitting_[d.queue].push_back(std::move(d));
    }
  }

  // ---- admission ----------------------------------------------------------------------

  // How many started tasks may wait for a handler thread: worker.local_queue,
  // else about a second's work at the handlers' recent pace. A started task's
  // run lease ticks while it waits, so slow handlers get a short local queue
  // and fast ones a long one (long batches of starts are what make them cheap).
  int local_queue() const {
    if (config_.worker.local_queue > 0) return config_.worker.local_queue;
    const int n = config_.worker.concurrency;
    const double per_second = n * 1000.0 / std::max(handler_ms_, 0.001);
    return static_cast<int>(std::clamp(per_second, static_cast<double>(n), 1024.0));
  }

  // Lets deliveries on to their starts while there is room: at most
  // concurrency + local_queue() tasks started here and not yet let go, and per
  // queue at most its [worker.queue.<name>] concurrency. Each place goes to the
  // queue with the fewest started tasks for its weight, so while several queues
  // have work they share the handlers by weight, task by task (the prefetch
  // shares them by message, and a bundle is one message of many tasks). The
  // others wait unstarted, in arrival order per queue.
  void admit() {
    if (admitting_.empty()) return;
    const int room = config_.worker.concurrency + local_queue();
    std::vector<std::deque<Delivery>*> waiting;
    std::vector<QueueLoad> loads;
    for (auto& [queue, deliveries] : admitting_) {
      const QueueSettings& s = queue_settings(queue);
      waiting.push_back(&deliveries);
      loads.push_back({static_cast<int>(deliveries.size()), admitted_by_queue_[queue], s.weight, s.concurrency});
    }
    for (int i; (i = next_queue(loads, admitted_, room)) >= 0;) {
      const auto at = static_cast<size_t>(i);
      Delivery d = std::move(waiting[at]->front());
      waiting[at]->pop_front();
      --loads[at].waiting;
      ++loads[at].started;
      d.admitted = true;
      ++admitted_;
      ++admitted_by_queue_[d.queue];
      move(d, DeliveryStage::starting);
      starting_.push_back(std::move(d));
    }
    std::erase_if(admitting_, [](const auto& e) { return e.second.empty(); });
  }

  // Hands back to its queue each task that has found no room to start here
  // for kHandBackAfter, while another worker consumes that queue. The broker
  // hands out whole messages, so a bundle (or a prefetch's worth of messages)
  // can land on a worker whose handlers are all busy while another's are free.
  // The copy goes with confirms and a header that makes whoever gets it keep
  // it, so a task travels back at most once; once the broker has it, this
  // delivery's task is done with here (collect_copies()). The task is
  // `dispatched` throughout: whichever delivery of it starts first runs it,
  // and any other finds it started or ended.
  void hand_back() {
    if (admitting_.empty() || stopping_.load() || !amqp_.connected() || publisher_.blocked()) return;
    const auto now = clock_.now();
    for (auto& [queue, waiting] : admitting_) {
      const auto waited = [&](const Delivery& d) { return now - d.arrived >= kHandBackAfter; };
      if (std::none_of(waiting.begin(), waiting.end(), waited)) continue;
      pause_consumer(queue);
      // Consuming, another worker has a handler free (see resume_consumers()).
      // One message of as many tasks as this worker has handlers at a time,
      // and none while copies handed back before still wait in the queue:
      // when every worker of a burst is as busy, tasks sent back and forth
      // only arrive later, and several workers handing back at once to the
      // one that is free would bury it.
      const size_t share = static_cast<size_t>(std::max(config_.worker.concurrency, 1));
      size_t budget = config_.worker.hand_back && others_free(queue) ? share : 0;
      std::map<int, std::vector<Delivery>, std::greater<>> going;  // by priority: a message has one
      for (auto it = waiting.begin(); it != waiting.end() && budget > 0;) {
        if (it->handed_back || !waited(*it) || it->generation != generation_) {
          ++it;
          continue;
        }
        --budget;
        move(*it, DeliveryStage::handing_back);
        going[it->priority].push_back(std::move(*it));
        it = waiting.erase(it);
      }
      for (auto& [priority, tasks] : going) {
        for (size_t at = 0; at < tasks.size(); at += share) {
          const size_t end = std::min(tasks.size(), at + share);
          std::vector<Delivery> batch(std::make_move_iterator(tasks.begin() + static_cast<std::ptrdiff_t>(at)),
                                      std::make_move_iterator(tasks.begin() + static_cast<std::ptrdiff_t>(end)));
          send_back(queue, priority, std::move(batch));
        }
      }
    }
    std::erase_if(admitting_, [](const auto& e) { return e.second.empty(); });
  }

  void send_back(const std::string& queue, int priority, std::vector<Delivery> batch) {
    std::vector<std::string> bodies;
    bodies.reserve(batch.size());
    for (const auto& d : batch) bodies.push_back(d.body.empty() ? encode_envelope(d.task) : d.body);
    std::string body;
    if (bodies.size() == 1) {
      body = std::move(bodies.front());
    } else {
      body = encode_bundle(std::vector<std::string_view>(bodies.begin(), bodies.end()));
    }
    AmqpMessageProps props;
    props.message_id = batch.front().task.id;
    if (priority > 0) props.priority = static_cast<uint8_t>(priority);
    props.headers = {{std::string(kHandedBackHeader), name_}};
    auto ticket = publisher_.publish(keys_.task_exchange(), queue, body, props);
    if (!ticket) {
      kept(std::move(batch));
      return;
    }
    returning_.emplace(*ticket, std::move(batch));
  }

  // Tasks whose hand-back the broker did not take: they stay, and start here
  // as room comes (a copy the broker may have taken after all finds them
  // started or ended).
  void kept(std::vector<Delivery> batch) {
    for (auto it = batch.rbegin(); it != batch.rend(); ++it) {
      it->handed_back = true;
      move(*it, DeliveryStage::admitting);
      admitting_[it->queue].push_front(std::move(*it));
    }
  }

  // Whether a worker other than this one consumes `queue` (this one does not
  // while it hands tasks back) and no message waits in it, as the broker said
  // at most kHandBackAfter ago.
  bool others_free(const std::string& queue) {
    auto& c = consumers_[queue];
    const auto now = clock_.now();
    if (now - c.asked >= kHandBackAfter) {
      c.asked = now;
      auto counts = amqp_.queue_counts(keys_.queue(queue));
      c.count = counts ? counts->consumers : 0;
      c.ready = counts ? counts->messages : 1;
    }
    const uint32_t self = consuming_.count(queue) != 0 ? 1u : 0u;
    return c.count > self && c.ready == 0;
  }

  // This worker is done with a delivery's task, or sets it aside: its type's
  // lock (given back with the next round trip, after the run's outcome) and its
  // place among the started tasks go back.
  void let_go(const Delivery& d) {
    if (d.gated) ungating_.emplace_back(d.task.type, run_token(d));
    if (d.admitted) {
      --admitted_;
      --admitted_by_queue_[d.queue];
    }
  }

  std::string run_token(const Delivery& d) const { return name_ + "#" + std::to_string(d.run); }

  // The gate's answer for a delivery of a blocking type (scripts::gate).
  void gated(Delivery d, scripts::GateVerdict verdict, int64_t n) {
    if (verdict == scripts::GateVerdict::run) {
      d.gated = true;
      move(d, DeliveryStage::admitting);
      admitting_[d.queue].push_back(std::move(d));
    } else if (verdict == scripts::GateVerdict::wait) {
      // Held unacked meanwhile, like a busy one: if this worker dies, its
      // place lapses and the broker hands the delivery on.
      spdlog::debug("worker {}: task {} waits its turn ({} ahead)", name_, d.task.id, n);
      move(d, DeliveryStage::waiting);
      waiting_.emplace(clock_.now() + kGateRecheck, std::move(d));
    } else {
      Finish f;
      f.outcome = scripts::FinishOutcome::discard;
      f.error = "discarded: a run of type '" + d.task.type + "' was running (blocking discard_if_busy)";
      move(d, DeliveryStage::finishing);
      f.delivery = std::move(d);
      if (finishing_.empty()) first_finish_ = clock_.now();
      finishing_.push_back(std::move(f));
    }
  }

  Finish unstart(Delivery d) {
    Finish f;
    f.outcome = scripts::FinishOutcome::unstart;
    move(d, DeliveryStage::finishing);
    f.delivery = std::move(d);
    return f;
  }

  // ---- circuit breakers ---------------------------------------------------------------

  // The downstream a task's breaker guards: its own `downstream`, else for an
  // http task the URL's host. (Which breaker that is: breaker_registry.h.)
  std::string downstream_of(const Envelope& task) const {
    if (!task.downstream.empty()) return task.downstream;
    if (config_.http.types.count(task.type) != 0) return http_downstream(task.payload);
    return {};
  }

  // The I/O thread meets a task's downstream as the delivery arrives, so that a
  // new downstream's fleet state is read (sync_breakers) before the task starts.
  void meet(const std::string& downstream) { breakers_.meet(downstream); }

  // Breakers are asked by the handler threads, at the moment a call would go,
  // not when its delivery arrived: a worker holding many tasks would otherwise
  // let them all through a breaker that was closed when they came.
  std::optional<Millis> hold_back(const std::string& downstream) { return breakers_.hold_back(downstream); }

  // A task its breaker held back goes back into the wheel until the breaker's
  // next trial, without spending an attempt (it did not run).
  Finish deferral(Ran& r) {
    // Jitter, so that the tasks held back together do not all return in the
    // millisecond the breaker half-opens and stampede a downstream that is
    // only just coming back (only the trial calls would run; the rest would
    // be deferred again).
    std::uniform_int_distribution<int64_t> jitter(0, std::max<int64_t>(100, r.held_ms / 10));
    Finish f;
    f.outcome = scripts::FinishOutcome::defer;
    f.delay_ms = r.held_ms + jitter(rng_);
    move(r.delivery, DeliveryStage::finishing);
    f.delivery = std::move(r.delivery);
    return f;
  }

  // A task of a type this worker does not serve: another worker on the queue
  // may (a fleet mid-deploy), so it goes back to the wheel without spending an
  // attempt, until this worker has seen it unserved for
  // worker.unknown_type_grace; then it is dead-lettered rather than passed
  // around for ever. The wheel moves its due time on each pass, so the worker
  // keeps when it first met it (in memory: a restart only lengthens the grace).
  Finish unhandled(Ran& r) {
    const auto now = clock_.now();
    const int64_t grace = config_.worker.unknown_type_grace_ms;
    if (unhandled_since_.size() > 10'000) {
      std::erase_if(unhandled_since_, [&](const auto& e) { return now - e.second > 2 * Millis(grace); });
    }
    const auto [it, met_now] = unhandled_since_.try_emplace(r.delivery.task.id, now);
    const int64_t late = std::chrono::duration_cast<Millis>(now - it->second).count();
    if (late < grace) {
      if (met_now) {
        spdlog::warn("worker {}: task {}: {}; back to the wheel (dead-lettered if still unserved here after {} ms)",
                     name_, r.delivery.task.id, r.error, grace);
      }
      // Soon at first (a worker that serves it may be a moment away), then
      // less often: each wait an eighth of what has passed. Each pass reaches
      // a worker the broker picks, which is as likely as not this one again
      // with two workers, so the grace must hold many passes: with waits of
      // half of what had passed, a 60 s grace held nine, and a task that
      // nine times in a row met the worker without its handler was
      // dead-lettered while the one with it was up (seen in the tests).
      // Each wait is drawn from half to one and a half of that: two tasks
      // bouncing between two workers (each with the other's handler) on the
      // same schedule were delivered in turn, and the broker's round-robin
      // then put each back on the wrong worker every time (seen in CI: 17
      // passes in a row); a wide random wait breaks that lockstep.
      const int64_t base = std::max<int64_t>(kUnhandledRecheck.count(), late / 8);
      std::uniform_int_distribution<int64_t> spread(base / 2, base + base / 2);
      r.held_ms = std::min<int64_t>(grace - late, spread(rng_));
      return deferral(r);
    }
    unhandled_since_.erase(r.delivery.task.id);
    Finish f;
    f.outcome = scripts::FinishOutcome::dead;
    f.dead_reason = "no handler";
    f.error = field_safe(r.error);
    f.delivery = std::move(r.delivery);
    return f;
  }

  // Records how a permitted call went. A Permanent failure counts as a success
  // for the breaker: the downstream answered, the request was wrong.
  void report_call(const Ran& r) {
    if (!r.delivery.permit) return;
    const auto opened = breakers_.report(r.delivery.downstream, r.error.empty() || r.permanent, r.took);
    if (!opened) return;
    spdlog::warn("worker {}: breaker '{}' opened for {} ms ({}; last error: {})", name_,
                 breakers_.breaker_of(r.delivery.downstream), opened->open_for.count(),
                 opened->before == BreakerState::half_open
                     ? std::string("a trial call failed")
                     : fmt::format("{} failed of the last {} calls", opened->failures + 1, opened->calls + 1),
                 r.error.empty() ? "slow call" : r.error);
  }

  // The fleet's view (keys.h): a breaker this worker opened is announced with a
  // key that lives as long as its open wait; every worker reads those keys for
  // the downstreams it has met and holds its own breaker open until they go.
  // So one worker's trip spares the downstream the others' calls at once, while
  // each worker's half-open trials stay its own decision. Snapshots of every
  // breaker go to a hash per worker for the console.
  void sync_breakers() {
    auto sync = breakers_.plan_sync(kBreakerSync);
    if (!sync) return;
    for (const auto& a : sync->opened) {
      redis_.append({"SET", keys_.breaker_open(a.downstream), name_ + "|" + std::to_string(a.open_for.count()), "PX",
                     std::to_string(a.left.count())});
    }
    const auto now = clock_.now();
    std::vector<std::string> hset = {"HSET", keys_.breakers(name_)};
    for (const auto& [ds, snap] : sync->all) {
      const int64_t reopens_in = snap.state == BreakerState::open && snap.open_until > now
                                     ? std::chrono::ceil<Millis>(snap.open_until - now).count()
                                     : 0;
      const nlohmann::json j = {{"state", to_string(snap.state)},
                                {"calls", snap.calls},
                                {"failures", snap.failures},
                                {"slow", snap.slow},
                                {"trips", snap.trips},
                                {"open_ms", snap.open_for.count()},
                                {"reopens_in_ms", reopens_in},
                                {"updated_ms", clock_.epoch_ms()}};
      hset.push_back(ds);
      hset.push_back(j.dump());
      redis_.append({"PTTL", keys_.breaker_open(ds)});
    }
    if (!sync->all.empty()) redis_.append(hset);
    if (!sync->freed.empty()) {
      std::vector<std::string> hdel = {"HDEL", keys_.breakers(name_)};
      hdel.insert(hdel.end(), sync->freed.begin(), sync->freed.end());
      redis_.append(hdel);
    }
    redis_.append({"PEXPIRE", keys_.breakers(name_), std::to_string(kBreakerSnapshotTtlMs)});
    auto replies = redis_.flush();
    if (!replies) {
      redis_log_.fail("redis: sharing breaker states: " + replies.error().message);
      return;
    }
    const size_t first_pttl = sync->opened.size();
    for (size_t i = 0; i < sync->all.size(); ++i) {
      const auto& reply = (*replies)[first_pttl + i];
      if (reply) breakers_.fleet_open(sync->all[i].first, Millis(reply->integer()));
    }
  }

  void count_received(size_t n) {
    std::lock_guard lock(stats_mu_);
    stats_.received += n;
  }

  void poison(Delivery& d, const std::string& error) {
    spdlog::error("worker {}: poison message {} on '{}': {}", name_, d.message_id, d.queue, error);
    dead_letter(d, "invalid envelope", error, 0, "", AfterCopy::ack, Finish{});
  }

  // A run that ended dead: its dead-letter copy first, then (once confirmed) the
  // record, then the ack.
  void dead_run(Finish f) {
    Delivery d = f.delivery;
    move(f.delivery, DeliveryStage::finishing);  // once its copy is confirmed
    const std::string reason = f.dead_reason, error = f.error, code = f.code;
    dead_letter(d, reason, error, d.attempt, code, AfterCopy::finish, std::move(f));
  }

  // Copies the delivery to its queue's dead-letter queue with the reason, on the
  // publisher connection; what follows waits for the broker's confirm (see
  // collect_copies()).
  void dead_letter(Delivery& d, const std::string& reason, const std::string& error, int attempts,
                   const std::string& code, AfterCopy then, Finish finish) {
    move(d, DeliveryStage::copying);
    DeadCopy c;
    c.props.message_id = d.message_id;
    // Cut again here, whatever the caller did: one header past the broker's
    // frame fails the publish and drops the connection (see ripen/untrusted.h).
    c.props.headers = {{"x-ripen-reason", cut_text(reason)},
                       {"x-ripen-error", cut_text(error)},
                       {"x-ripen-attempts", static_cast<int64_t>(attempts)},
                       {"x-ripen-worker", name_}};
    if (!code.empty()) c.props.headers.emplace_back("x-ripen-error-code", cut_text(code, kMaxErrorCode));
    c.delivery = d;
    if (c.delivery.body.empty()) c.delivery.body = encode_envelope(d.task);
    c.then = then;
    c.finish = std::move(finish);
    send_copy(std::move(c));
  }

  void send_copy(DeadCopy c) {
    if (c.delivery.generation != generation_ || !amqp_.connected()) {
      // Its delivery is the broker's again (the connection broke): it is
      // redelivered, and dead-lettered then.
      release(c.delivery, false);
      return;
    }
    auto ticket = publisher_.publish(keys_.dead_exchange(), c.delivery.queue, c.delivery.body, c.props);
    if (!ticket) {
      dead_log_.fail("worker " + name_ + ": dead-lettering: " + ticket.error().message + "; holding the delivery");
      copy_again_.push_back(std::move(c));
      return;
    }
    copies_.emplace(*ticket, std::move(c));
  }

  // Acts on the broker's answers to dead-letter copies, and sends again those
  // it did not take.
  void collect_copies() {
    publisher_.poll();
    for (const auto& settled : publisher_.take_settled()) {
      if (auto back = returning_.find(settled.ticket); back != returning_.end()) {
        std::vector<Delivery> batch = std::move(back->second);
        returning_.erase(back);
        if (!settled.confirmed) {
          kept(std::move(batch));
          continue;
        }
        {
          std::lock_guard lock(stats_mu_);
          stats_.handed_back += batch.size();
        }
        for (auto& d : batch) ack(d);
        continue;
      }
      auto it = copies_.find(settled.ticket);
      if (it == copies_.end()) continue;
      DeadCopy c = std::move(it->second);
      copies_.erase(it);
      if (!settled.confirmed) {
        copy_again_.push_back(std::move(c));
        continue;
      }
      dead_log_.ok("dead letters");
      {
        std::lock_guard lock(stats_mu_);
        ++stats_.dead;
      }
      if (c.then == AfterCopy::ack) {
        ack(c.delivery);
      } else {
        if (finishing_.empty()) first_finish_ = clock_.now();
        finishing_.push_back(std::move(c.finish));  // its delivery stands at finishing (dead_run)
      }
    }
    if (copy_again_.empty() || publisher_.blocked()) return;
    std::deque<DeadCopy> again;
    again.swap(copy_again_);
    for (auto& c : again) send_copy(std::move(c));
  }

  // This task of its delivery is done with. The delivery is acked (by
  // flush_acks()) once all its tasks are.
  void ack(Delivery& d) { release(d, false); }

  // Hands the task back undone (shutting down). Its delivery goes back to the
  // queue once all its tasks are done with; a bundle's tasks that ended
  // meanwhile are skipped when it comes again.
  void requeue(Delivery& d) { release(d, true); }

  void release(Delivery& d, bool give_back) {
    move(d, DeliveryStage::done);
    let_go(d);
    // A delivery from a connection that has since broken is redelivered by the
    // broker; its tag means nothing on the new channel.
    if (d.generation != generation_ || !amqp_.connected()) return;
    if (acks_.done(d.tag, give_back) != AckLedger::Verdict::requeue) return;
    if (auto st = amqp_.nack(d.tag, /*requeue=*/true); !st) {
      spdlog::warn("worker {}: handing back a delivery: {}", name_, st.error().message);
    }
  }

  // Sends the acks the ledger has queued (one `multiple` ack for most: the
  // broker spends ~13% less CPU per message than on one ack each).
  void flush_acks() {
    const AckLedger::Acks acks = acks_.take_acks();
    if (acks.empty()) return;
    Status st;
    if (acks.multiple != 0) st = amqp_.ack(acks.multiple, /*multiple=*/true);
    for (uint64_t tag : acks.singles) {
      if (st) st = amqp_.ack(tag);
    }
    if (!st) spdlog::warn("worker {}: acking: {}", name_, st.error().message);
  }

  // Sleeps up to `timeout`, waking for deliveries, finished handlers or stop.
  void wait(std::chrono::milliseconds timeout) {
    if (amqp_.connected() && (amqp_frames_enqueued(amqp_.raw()) || amqp_data_in_buffer(amqp_.raw()))) return;
    // Handler threads write done_fd only while this thread says it sleeps (one
    // syscall per sleep, not per task). The flag is raised before looking at ran_,
    // so a result pushed after the look always sees it raised: no lost wake-up.
    io_waiting_.store(true);
    {
      std::lock_guard lock(ran_mu_);
      if (!ran_.empty()) {
        io_waiting_.store(false);
        return;
      }
    }
    pollfd fds[4] = {{stop_fd_, POLLIN, 0}, {done_fd_, POLLIN, 0}, {-1, POLLIN, 0}, {publisher_.fd(), POLLIN, 0}};
    if (amqp_.connected()) fds[2].fd = amqp_get_sockfd(amqp_.raw());
    poll(fds, 4, static_cast<int>(timeout.count()));
    io_waiting_.store(false);
    if (fds[1].revents != 0) drain(done_fd_);
  }

  // ---- recording in Redis -----------------------------------------------------------

  // Turns finished handler runs into finishes to record.
  void collect_ran() {
    std::deque<Ran> batch;
    {
      std::lock_guard lock(ran_mu_);
      batch.swap(ran_);
    }
    if (finishing_.empty() && !batch.empty()) first_finish_ = clock_.now();
    std::uniform_real_distribution<double> uniform(0.0, 1.0);
    for (auto& r : batch) {
      report_call(r);
      if (r.not_run) {
        finishing_.push_back(unstart(std::move(r.delivery)));
        continue;
      }
      if (r.stale_lease) {
        // Its start asked again under the same run token renews the lease
        // (start.lua); it then goes to the front of the handlers' queue.
        move(r.delivery, DeliveryStage::starting);
        r.delivery.renewing = true;
        starting_.push_back(std::move(r.delivery));
        continue;
      }
      if (r.held_ms >= 0) {
        finishing_.push_back(deferral(r));
        continue;
      }
      if (r.no_handler) {
        Finish f = unhandled(r);
        if (f.outcome == scripts::FinishOutcome::dead) {
          dead_run(std::move(f));
        } else {
          finishing_.push_back(std::move(f));
        }
        continue;
      }
      handler_ms_ += 0.2 * (static_cast<double>(r.took.count()) - handler_ms_);
      Finish f;
      f.error = field_safe(r.error);
      f.code = r.code;
      RunOutcome run;
      run.ok = r.error.empty();
      run.permanent = r.permanent;
      run.error = r.error;
      run.code = r.code;
      run.attempt = r.delivery.attempt;
      run.max_attempts = r.delivery.max_attempts;
      const RetryDecision decision =
          decide_retry(run, retry_policy(r.delivery.task.type), [&] { return uniform(rng_); });
      f.delivery = std::move(r.delivery);
      switch (decision.verdict) {
        case RetryDecision::Verdict::succeeded:
          f.outcome = scripts::FinishOutcome::ok;
          break;
        case RetryDecision::Verdict::retry:
          f.outcome = scripts::FinishOutcome::retry;
          f.delay_ms = decision.delay_ms;
          break;
        case RetryDecision::Verdict::dead:
          f.outcome = scripts::FinishOutcome::dead;
          f.dead_reason = decision.reason;
          dead_run(std::move(f));
          continue;
      }
      move(f.delivery, DeliveryStage::finishing);
      finishing_.push_back(std::move(f));
    }
  }

  // Gives back the type locks of runs that are over, then asks the gates of the
  // deliveries of blocking types, in one pipelined round trip. Returns false
  // when Redis could not be reached (both lists stay for the next try).
  bool record_gates() {
    if (gating_.empty() && ungating_.empty()) return true;
    for (const auto& [type, token] : ungating_) scripts::append_release_held(redis_, keys_.type_lock(type), token);
    for (const auto& d : gating_) {
      const auto& type = d.task.type;
      scripts::GateRequest g;
      g.serial = blocking_of(type) == Blocking::serial;
      g.holder = run_token(d);
      g.task_id = d.task.id;
      g.order = d.task.due_ms.value_or(d.task.created_ms);
      g.lease_ms = run_lease_ms(d.task);
      g.wait_ms = kGatePlaceMs;
      scripts::append_gate(redis_, keys_, type, g);
    }
    auto replies = redis_.flush();
    if (!replies) {
      redis_log_.fail("redis: taking and giving back task type locks: " + replies.error().message);
      for (auto& d : gating_) d.in_doubt = true;
      return false;
    }
    size_t at = 0;
    std::vector<std::pair<std::string, std::string>> ungate_again;
    for (auto& u : ungating_) {
      if (const auto& r = (*replies)[at++]; !r) {
        spdlog::error("worker {}: giving back the lock of type '{}': {}", name_, u.first, r.error().message);
        ungate_again.push_back(std::move(u));
      }
    }
    std::vector<Delivery> gating;
    gating.swap(gating_);
    ungating_ = std::move(ungate_again);
    for (auto& d : gating) {
      auto r = scripts::read_gate((*replies)[at++]);
      if (!r) {
        spdlog::error("worker {}: task {}: asking its type's lock: {}", name_, d.task.id, r.error().message);
        gating_.push_back(std::move(d));
        continue;
      }
      gated(std::move(d), r->verdict, r->n);
    }
    return true;
  }

  // Records every pending finish and start in one pipelined round trip, then acts
  // on the replies. Returns false when Redis could not be reached (nothing is lost:
  // the lists stay for the next try).
  bool record(bool with_finishes = true) {
    if (starting_.empty() && (finishing_.empty() || !with_finishes)) return true;
    std::map<int, std::vector<size_t>> finish_by_shard, start_by_shard;
    for (size_t i = 0; with_finishes && i < finishing_.size(); ++i)
      finish_by_shard[keys_.shard_of(finishing_[i].delivery.task.id)].push_back(i);
    for (size_t i = 0; i < starting_.size(); ++i) start_by_shard[keys_.shard_of(starting_[i].task.id)].push_back(i);
    // One script run for the outcomes and one for the starts, each with a
    // section per shard. Each start carries its own run lease: its task's time
    // limit, not the longest of the batch.
    scripts::FinishCall finishes(keys_, name_, config_.record_retention_ms, config_.idempotency_retention_ms);
    scripts::StartCall starts(keys_, name_);
    std::vector<std::string> heads;  // kept alive until the call is appended
    heads.reserve(finishing_.size());
    for (const auto& [shard, members] : finish_by_shard) {
      std::vector<scripts::FinishRequest> runs;
      runs.reserve(members.size());
      for (size_t i : members) {
        const Finish& f = finishing_[i];
        heads.push_back(f.outcome == scripts::FinishOutcome::retry ? std::string() : pack_task_head(f.delivery.task));
        runs.push_back({f.delivery.task.id, f.delivery.run, f.outcome, f.error, f.delay_ms, heads.back()});
      }
      finishes.add(shard, runs);
    }
    for (const auto& [shard, members] : start_by_shard) {
      std::vector<scripts::StartRequest> deliveries;
      deliveries.reserve(members.size());
      for (size_t i : members) {
        const Delivery& d = starting_[i];
        deliveries.push_back({d.task.id, d.run, run_lease_ms(d.task), d.task.queue, d.task.type, d.payload_digest});
      }
      starts.add(shard, deliveries);
    }
    const bool any_finishes = finishes.sections() > 0, any_starts = starts.sections() > 0;
    if (any_finishes) finishes.append_to(redis_);
    if (any_starts) starts.append_to(redis_);
    auto replies = redis_.flush();
    if (!replies) {
      redis_log_.fail("redis: recording task starts and outcomes: " + replies.error().message);
      for (auto& d : starting_) d.in_doubt = true;
      return false;
    }
    size_t at = 0;
    std::string trouble;  // a script's error: what is left is tried again, paced
    std::vector<Finish> finish_again;
    if (any_finishes) {
      const auto& reply = (*replies)[at++];
      size_t section = 0;
      for (const auto& [shard, members] : finish_by_shard) {
        auto results = reply ? scripts::FinishCall::read(reply->at(section++))
                             : Result<std::vector<scripts::FinishReply>>(reply.error());
        for (size_t k = 0; k < members.size(); ++k) {
          Finish& f = finishing_[members[k]];
          if (!results || results->size() != members.size()) {
            trouble =
                "recording task outcomes: " + (results ? std::string("unexpected reply") : results.error().message);
            finish_again.push_back(std::move(f));
            continue;
          }
          finished(f, (*results)[k]);
        }
      }
    }
    std::vector<Delivery> start_again;
    if (any_starts) {
      const auto& reply = (*replies)[at++];
      size_t section = 0;
      for (const auto& [shard, members] : start_by_shard) {
        auto results = reply ? scripts::StartCall::read(reply->at(section++))
                             : Result<std::vector<scripts::StartReply>>(reply.error());
        for (size_t k = 0; k < members.size(); ++k) {
          Delivery& d = starting_[members[k]];
          if (!results || results->size() != members.size()) {
            trouble = "recording task starts: " + (results ? std::string("unexpected reply") : results.error().message);
            start_again.push_back(std::move(d));
            continue;
          }
          started(std::move(d), (*results)[k]);
        }
      }
    }
    if (with_finishes) finishing_ = std::move(finish_again);
    starting_ = std::move(start_again);
    dispatch_ready();
    if (!trouble.empty()) {
      redis_log_.fail("redis: " + trouble);
      return false;
    }
    redis_log_.ok("redis");
    return true;
  }

  void started(Delivery d, const scripts::StartReply& r) {
    switch (r.verdict) {
      case scripts::StartVerdict::busy: {
        move(d, DeliveryStage::busy);
        // Looked at again every second: the other run usually ends well before
        // its lease (the start is then refused: it ended), and the lease is the
        // bound. Its type's lock, if it took one, goes back meanwhile, and is
        // asked again; so does its place among the tasks started here.
        let_go(d);
        d.gated = d.admitted = false;
        const Millis again = std::min(Millis(r.busy_ms), kBusyRecheck);
        spdlog::debug("worker {}: task {} is running elsewhere under a lease; looking again in {} ms", name_, d.task.id,
                      again.count());
        busy_.emplace(clock_.now() + again, std::move(d));
        return;
      }
      case scripts::StartVerdict::refused:
        // Ended already, or waiting in the wheel for its retry or deferral (this
        // is an old copy of an earlier dispatch: running it now would run it
        // early, and the wheel publishes it again when it is due).
        spdlog::debug("worker {}: task {} is {}; duplicate delivery acked unrun", name_, d.task.id, to_string(r.state));
        {
          std::lock_guard lock(stats_mu_);
          ++stats_.duplicates;
        }
        ack(d);
        return;
      case scripts::StartVerdict::missing:
        spdlog::error("worker {}: task {} has no record (expired or another namespace); dead-lettering", name_,
                      d.task.id);
        dead_letter(d, "no task record", "no record for task " + d.task.id + " in namespace " + config_.ns, 0, "",
                    AfterCopy::ack, Finish{});
        return;
      case scripts::StartVerdict::mismatch:
        // Not the message the dispatcher published for it: someone who may
        // publish to the queue sent a known id with a type or payload of their own.
        spdlog::error(
            "worker {}: a delivery of task {} does not match the stored task (queue, type or payload); "
            "dead-lettered unrun",
            name_, d.task.id);
        dead_letter(d, "does not match its task", "queue, type or payload differ from the stored task " + d.task.id, 0,
                    "", AfterCopy::ack, Finish{});
        return;
      case scripts::StartVerdict::run:
        break;
    }
    d.attempt = r.attempt;
    // The envelope carries the stored max_attempts (the dispatcher built it).
    d.max_attempts = d.task.max_attempts > 0 ? d.task.max_attempts : config_.default_max_attempts;
    d.due_ms = r.due_ms;
    {
      std::lock_guard lock(stats_mu_);
      // created_ms as the dispatcher copied it from the stored task (start
      // has checked the delivery's queue, type and payload against it).
      stats_.lateness.record(lateness_ms(r.now_ms, d.due_ms, d.task.created_ms));
    }
    d.started_at = clock_.now();
    move(d, DeliveryStage::ready);
    ready_.push_back(std::move(d));
  }

  // Hands the deliveries whose start was recorded to the handler threads, waking
  // no more threads than there is work for. They run highest priority first,
  // then in the order they arrived: the starts are recorded shard by shard, so
  // the replies come in another order, and a task the broker delivered first
  // for its priority must not then wait here behind lower ones.
  void dispatch_ready() {
    if (ready_.empty()) return;
    const size_t n = ready_.size();
    std::sort(ready_.begin(), ready_.end(), [](const Delivery& a, const Delivery& b) {
      return a.priority != b.priority ? a.priority > b.priority : a.run < b.run;
    });
    {
      std::lock_guard lock(jobs_mu_);
      for (auto& d : ready_) {
        if (d.renewing) {
          d.renewing = false;
          jobs_.push_front(std::move(d));  // it waited its turn once already
          continue;
        }
        // Behind every job of its priority or higher (equal ones: O(1)).
        auto at = jobs_.end();
        while (at != jobs_.begin() && std::prev(at)->priority < d.priority) --at;
        jobs_.insert(at, std::move(d));
      }
    }
    ready_.clear();
    if (n >= static_cast<size_t>(config_.worker.concurrency)) {
      jobs_cv_.notify_all();
    } else {
      for (size_t i = 0; i < n; ++i) jobs_cv_.notify_one();
    }
  }

  void finished(Finish& f, const scripts::FinishReply& r) {
    using scripts::FinishOutcome;
    using scripts::FinishResult;
    Delivery& d = f.delivery;
    switch (r.result) {
      case FinishResult::succeeded: {
        std::lock_guard lock(stats_mu_);
        ++stats_.succeeded;
        break;
      }
      case FinishResult::failed:
        spdlog::warn("worker {}: task {} attempt {}/{} failed: {}; retry in {} ms", name_, d.task.id, d.attempt,
                     d.max_attempts, f.error, f.delay_ms);
        {
          std::lock_guard lock(stats_mu_);
          ++stats_.retried;
        }
        break;
      case FinishResult::dead:
        spdlog::error("worker {}: task {} dead after attempt {}/{}: {}", name_, d.task.id, d.attempt, d.max_attempts,
                      f.error);
        break;
      case FinishResult::deferred:
        if (f.outcome == FinishOutcome::defer) {
          spdlog::debug("worker {}: task {}: breaker for '{}' open; deferred {} ms", name_, d.task.id, d.downstream,
                        f.delay_ms);
          std::lock_guard lock(stats_mu_);
          ++stats_.deferred;
        }
        break;
      case FinishResult::discarded: {
        spdlog::info("worker {}: task {} {}", name_, d.task.id, f.error);
        std::lock_guard lock(stats_mu_);
        ++stats_.discarded;
        break;
      }
      case FinishResult::unstarted:
        requeue(d);
        return;
      case FinishResult::stale:
        if (f.outcome == FinishOutcome::unstart) {
          // An earlier call (its reply lost) may have written it, and then this
          // delivery is what will run it. A needless requeue costs one duplicate
          // delivery, which its start turns away.
          requeue(d);
          return;
        }
        // Written already by an earlier call whose reply was lost, or the run
        // lease passed and another run took the task over: its outcome counts.
        spdlog::warn("worker {}: task {}: no longer running under this delivery's run; outcome '{}' not recorded",
                     name_, d.task.id, scripts::to_string(f.outcome));
        break;
      case FinishResult::refused:
      case FinishResult::missing:
        // It moved on meanwhile (ended, or another run's outcome put it back in
        // the wheel): this delivery is done with either way.
        if (f.outcome != FinishOutcome::discard && f.outcome != FinishOutcome::unstart) {
          spdlog::warn("worker {}: task {}: outcome '{}' not recorded: the task is {}", name_, d.task.id,
                       scripts::to_string(f.outcome),
                       r.result == FinishResult::missing ? "gone (ended)" : to_string(r.state));
        }
        break;
    }
    ack(d);
  }

  // ---- handler threads ------------------------------------------------------------

  void handler_thread() {
    const auto threads = static_cast<size_t>(config_.worker.concurrency);
    std::vector<Delivery> chunk;
    std::vector<Ran> results;
    while (true) {
      {
        std::unique_lock lock(jobs_mu_);
        jobs_cv_.wait(lock, [&] { return !jobs_.empty() || draining_; });
        if (jobs_.empty()) return;
        // Its share of what waits: short handlers then cost one hand-over per
        // share instead of one per task, and long ones still spread over all threads.
        const size_t take = (jobs_.size() + threads - 1) / threads;
        for (size_t i = 0; i < take; ++i) {
          chunk.push_back(std::move(jobs_.front()));
          jobs_.pop_front();
        }
        running_ += static_cast<int>(chunk.size());
      }
      for (auto& d : chunk) {
        move(d, DeliveryStage::running);
        if (!stopping_.load() && lease_worn(d)) {
          // Its run lease counts from its start, which was recorded before it
          // waited here for a thread: run now, and another delivery could take
          // the task over while it runs. It goes back to renew its lease first.
          Ran renew;
          renew.delivery = std::move(d);
          renew.stale_lease = true;
          results.push_back(std::move(renew));
          continue;
        }
        if (!stopping_.load()) {
          if (!d.downstream.empty()) {
            if (auto wait = hold_back(d.downstream)) {
              Ran held;
              held.delivery = std::move(d);
              held.held_ms = wait->count();
              results.push_back(std::move(held));
              continue;
            }
            d.permit = true;
          }
          results.push_back(run_handler(std::move(d)));
          continue;
        }
        // Taken in this thread's share but not started: it goes back to the
        // queue like every task the stopping worker did not start.
        Ran back;
        back.delivery = std::move(d);
        back.not_run = true;
        results.push_back(std::move(back));
      }
      {
        std::lock_guard lock(ran_mu_);
        for (auto& r : results) ran_.push_back(std::move(r));
      }
      {
        std::lock_guard lock(jobs_mu_);
        running_ -= static_cast<int>(chunk.size());
      }
      chunk.clear();
      results.clear();
      if (io_waiting_.exchange(false)) wake(done_fd_);
    }
  }

  // Whether so much of a started task's run lease has passed while it waited
  // for a handler thread that less than its time limit plus half the grace is
  // left: then a handler that runs to its time limit could outlive the lease.
  bool lease_worn(const Delivery& d) const {
    return clock_.now() - d.started_at > Millis(std::max<int64_t>(config_.worker.lease_grace_ms / 2, 1));
  }

  Ran run_handler(Delivery d) {
    Ran ran;
    auto handler = handlers_.find(d.task.type);
    if (handler == handlers_.end()) {
      ran.no_handler = true;
      ran.error = "no worker handles task type '" + d.task.type + "' (worker " + name_ + " on queue '" + d.queue +
                  "' has none)";
    } else {
      TaskContext ctx{d.task,
                      d.task.id,
                      d.task.idempotency_key.empty() ? d.task.id : d.task.idempotency_key,
                      d.attempt,
                      d.due_ms,
                      timeout_ms(d.task),
                      clock_.now() + std::chrono::milliseconds(timeout_ms(d.task)),
                      &stopping_,
                      &cancelled_};
      const auto began = clock_.now();
      // An error text is cut as it is caught: it becomes the task's
      // last_error, a dead-letter header and log lines, none of which should
      // carry a handler's 200 KB of stderr.
      try {
        handler->second(ctx);
      } catch (const Failure& e) {
        ran.error = cut_text(e.what());
        if (ran.error.empty()) ran.error = "handler failed";
        ran.code = cut_text(e.code(), kMaxErrorCode);
        ran.permanent = dynamic_cast<const Permanent*>(&e) != nullptr;
      } catch (const std::exception& e) {
        ran.error = cut_text(e.what());
        if (ran.error.empty()) ran.error = "handler failed";
      } catch (...) {
        ran.error = "handler threw a non-standard exception";
      }
      ran.took = std::chrono::duration_cast<Millis>(clock_.now() - began);
    }
    ran.delivery = std::move(d);
    return ran;
  }

  // ---- Redis outages ------------------------------------------------------------------

  // A round trip to Redis failed. A script's error leaves Redis answering (the
  // work waits and is tried again); a Redis that does not answer a PING either
  // is an outage.
  void redis_trouble() {
    if (redis_down_) return;
    if (auto st = redis_.ping(); !st) redis_lost(st.error().message);
  }

  // Without Redis nothing can start here (a start is recorded before its run),
  // so this worker takes no more deliveries and hands back those it has not
  // started, for a worker that can start them, or for itself once Redis
  // answers. Runs already started go on; their outcomes wait to be recorded
  // (a handed-back copy of a run that happened would run it again). Said once
  // per outage, and once when it ends.
  void redis_lost(const std::string& error) {
    redis_down_ = true;
    next_probe_ = clock_.now() + kRedisProbe;
    std::vector<std::string> queues;
    for (const auto& [queue, tag] : consuming_) queues.push_back(queue);
    for (const auto& q : queues) pause_consumer(q);
    const size_t back = requeue_unstarted(/*keep_in_doubt=*/true);
    flush_acks();
    spdlog::error(
        "worker {}: Redis at {} is unreachable ({}); not consuming [{}] and handing back {} deliveries not "
        "started, until it answers",
        name_, redis_.url().redacted(), error, fmt::join(config_.worker.queues, ", "), back);
  }

  // Whether Redis answers again (asked every kRedisProbe); if so, consumes again.
  bool redis_back() {
    if (clock_.now() < next_probe_) return false;
    next_probe_ = clock_.now() + kRedisProbe;
    if (!redis_.ping()) return false;
    redis_down_ = false;
    redis_log_.ok("redis");
    spdlog::warn("worker {}: Redis at {} answers again; consuming [{}] again", name_, redis_.url().redacted(),
                 fmt::join(config_.worker.queues, ", "));
    resume_consumers();
    return true;
  }

  // Hands back to the broker every delivery whose run has not started here:
  // not yet admitted, waiting for its start to be recorded, waiting for its
  // type's gate or turn, or for a run elsewhere. Returns how many tasks.
  // With keep_in_doubt (an outage), a delivery whose start or gate went out in
  // a round trip that lost its replies stays: Redis may have recorded it, and
  // only this delivery, asking again under the same run token, takes that
  // record over at once (a copy handed on would wait out the run lease).
  size_t requeue_unstarted(bool keep_in_doubt = false) {
    size_t n = busy_.size() + waiting_.size();
    const auto give_back = [&](std::vector<Delivery>& list) {
      std::vector<Delivery> kept;
      for (auto& d : list) {
        if (keep_in_doubt && d.in_doubt) {
          kept.push_back(std::move(d));
        } else {
          requeue(d);
          ++n;
        }
      }
      list = std::move(kept);
    };
    give_back(starting_);
    for (auto& [when, d] : busy_) requeue(d);
    busy_.clear();
    give_back(gating_);
    for (auto& [queue, waiting] : admitting_) {
      n += waiting.size();
      for (auto& d : waiting) requeue(d);
    }
    admitting_.clear();
    for (auto& [when, d] : waiting_) requeue(d);
    waiting_.clear();
    return n;
  }

  // ---- shutdown ---------------------------------------------------------------------

  int running() {
    std::lock_guard lock(jobs_mu_);
    return running_;
  }

  void shutdown(std::vector<std::thread>& pool) {
    drain(stop_fd_);  // so that wait() sleeps again, and a second stop (abandon()) wakes it
    spdlog::info("worker {}: stopping; cancelling consumers", name_);
    for (const auto& [q, tag] : consuming_) (void)amqp_.cancel(tag);
    // Deliveries not yet running go back to the queue.
    std::deque<Delivery> unstarted;
    {
      std::lock_guard lock(jobs_mu_);
      unstarted.swap(jobs_);
      draining_ = true;
    }
    jobs_cv_.notify_all();
    // Their starts were recorded: each is marked not running again before its
    // delivery goes back, or its next delivery would wait out the run lease.
    if (!unstarted.empty() && finishing_.empty()) first_finish_ = clock_.now();
    for (auto& d : unstarted) finishing_.push_back(unstart(std::move(d)));
    requeue_unstarted();
    // Running handlers get the grace period; their outcomes are recorded and
    // acked as they come. A second stop (abandon()) cuts it short.
    const auto deadline = clock_.now() + std::chrono::milliseconds(config_.worker.shutdown_grace_ms);
    if (const int n = running(); n > 0 && !abandon_.load()) {
      spdlog::warn(
          "worker {}: draining: {} tasks running, waiting up to {} ms for them (worker.shutdown_grace); stop it "
          "again (Ctrl-C, SIGTERM) to stop now",
          name_, n, config_.worker.shutdown_grace_ms);
    }
    while (clock_.now() < deadline && !abandon_.load()) {
      collect_copies();
      collect_ran();
      record();
      flush_acks();
      record_gates();
      if (running() == 0 && finishing_.empty() && copies_.empty() && copy_again_.empty() && returning_.empty()) break;
      wait(std::chrono::milliseconds(50));
    }
    if (const int n = running(); n > 0) {
      // Past the grace, or stopped again: tell handlers to give up (exec kills
      // its command), and close the connection so their deliveries go back to
      // the queue now. What a cancelled handler returns is recorded like any
      // outcome (an exec run killed so is a failure: retried per its policy);
      // a run whose outcome cannot be recorded stays `running` until its run
      // lease passes, and its redelivered copy then runs it again, as after a
      // crash.
      if (abandon_.load()) {
        abandoned_.store(true);
        spdlog::warn(
            "worker {}: stopped again: abandoning {} running tasks; their handlers are cancelled (exec commands "
            "killed), each run counts as a failed attempt and is retried per its retry policy (dead-lettered if it "
            "was the last), and one whose outcome cannot be recorded runs again once its run lease has passed",
            name_, n);
      } else {
        spdlog::warn(
            "worker {}: {} handlers still running after the grace period; cancelling them, their tasks will "
            "be retried (a failed attempt) or, if their outcome cannot be recorded, redelivered once their run "
            "lease has passed",
            name_, n);
      }
      cancelled_.store(true);
      amqp_.close();
    }
    for (auto& t : pool) t.join();
    collect_copies();
    collect_ran();
    for (int i = 0; i < 3 && !finishing_.empty(); ++i) record();  // unacked ones are redelivered regardless
    flush_acks();
    record_gates();  // a lock not given back lapses after its run's lease
    amqp_.close();
    std::lock_guard lock(stats_mu_);
    spdlog::info(
        "worker {} stopped: received={} succeeded={} retried={} dead={} duplicates={} deferred={} discarded={} "
        "handed_back={} lateness {}",
        name_, stats_.received, stats_.succeeded, stats_.retried, stats_.dead, stats_.duplicates, stats_.deferred,
        stats_.discarded, stats_.handed_back, stats_.lateness.summary());
  }

  Config config_;
  Clock& clock_;
  std::string name_;
  Keys keys_;
  Redis redis_;                          // the I/O thread's
  Amqp amqp_;                            // the I/O thread's
  ConfirmedPublisher publisher_;         // the I/O thread's: dead-letter copies, on a connection of their own
  std::map<uint64_t, DeadCopy> copies_;  // by publisher ticket: sent, awaiting the broker's confirm
  std::map<uint64_t, std::vector<Delivery>> returning_;  // by publisher ticket: handed back, awaiting the confirm
  struct Consumers {
    uint32_t count = 0;  // consumers
    uint32_t ready = 0;  // messages waiting
    Clock::time_point asked{};
  };
  std::map<std::string, Consumers> consumers_;  // by queue: how many consume it, for hand_back()
  std::deque<DeadCopy> copy_again_;             // not taken by the broker (yet): sent again soon
  int stop_fd_;
  int done_fd_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> cancelled_{false};
  std::atomic<bool> abandon_{false};     // stopped a second time: no grace for running handlers
  std::atomic<bool> abandoned_{false};   // ... and some were running, and were cancelled
  bool redis_down_ = false;              // Redis did not answer: not consuming (see redis_lost())
  Clock::time_point next_probe_{};       // while redis_down_: when to ask Redis again
  std::atomic<bool> io_waiting_{false};  // the I/O thread sleeps in poll() (see wait())
  std::unordered_map<std::string, Handler> handlers_;
  std::map<std::string, std::string, std::less<>> consumer_tags_;  // tag -> task queue
  std::map<std::string, std::string> consuming_;                   // task queue -> its consumer's tag, while consuming
  uint64_t generation_ = 0;
  std::mt19937_64 rng_;       // jitter for retry backoff and deferrals
  BreakerRegistry breakers_;  // by downstream; handler threads ask it, the I/O thread reports to it
  std::unordered_map<std::string, Clock::time_point> unhandled_since_;  // task id -> first met with no handler
  FailureLog amqp_log_{clock_}, redis_log_{clock_}, dead_log_{clock_};

  // Owned by the I/O thread.
  std::vector<Delivery> starting_;  // read, start not yet recorded
  std::vector<Finish> finishing_;   // ran, outcome not yet recorded
  Clock::time_point first_finish_;  // when the oldest of finishing_ came back
  std::vector<Delivery> ready_;     // start recorded, to hand to the handler threads
  // The last Delivery::run handed out. It starts at a random point so that a
  // worker restarted under the same name does not reuse its last life's run
  // tokens (a start would take an old running record for its own).
  uint64_t runs_ = static_cast<uint64_t>(std::random_device{}()) << 32;
  std::multimap<Clock::time_point, Delivery> busy_;            // running elsewhere: start again at that time
  std::vector<Delivery> gating_;                               // blocking types: to ask their type's gate
  std::multimap<Clock::time_point, Delivery> waiting_;         // serial types: waiting their turn
  std::vector<std::pair<std::string, std::string>> ungating_;  // (type, run token): locks to give back
  std::map<std::string, std::deque<Delivery>> admitting_;      // by queue: waiting for room to start (admit())
  int admitted_ = 0;                                           // tasks started here and not yet let go
  std::map<std::string, int> admitted_by_queue_;
  double handler_ms_ = 1000;      // recent handler run time, a moving average (starts cautious)
  double tasks_per_message_ = 1;  // tasks a delivery brought of late, a moving average
  int auto_prefetch_ = 1;         // the prefetch asked for when worker.prefetch is 0
  AckLedger acks_;                // this connection's deliveries, until acked or handed back

  std::mutex jobs_mu_;
  std::condition_variable jobs_cv_;
  std::deque<Delivery> jobs_;  // started, waiting for a handler thread
  int running_ = 0;
  bool draining_ = false;

  std::mutex ran_mu_;
  std::deque<Ran> ran_;  // handler runs that ended

  mutable std::mutex stats_mu_;
  WorkerStats stats_;
};

Worker::Worker(const Config& config, const std::string& name, Clock& clock)
    : impl_(std::make_unique<Impl>(config, name, clock)) {}
Worker::~Worker() = default;
void Worker::handle(const std::string& type, Handler handler) { impl_->handle(type, std::move(handler)); }
void Worker::run() { impl_->run(); }
void Worker::stop() { impl_->stop(); }
void Worker::abandon() { impl_->abandon(); }
bool Worker::abandoned() const { return impl_->abandoned(); }
WorkerStats Worker::stats() const { return impl_->stats(); }
const std::string& Worker::name() const { return impl_->name(); }

}  // namespace ripen
