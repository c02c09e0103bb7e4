#include "ripen/ingress.h"

#include <amqp.h>  // before amqp_framing.h, which needs its types
#include <amqp_framing.h>

#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "ripen/amqp.h"
#include "ripen/envelope.h"
#include "ripen/failure_log.h"
#include "ripen/keys.h"
#include "ripen/producer.h"
#include "ripen/redis.h"
#include "ripen/topology.h"
#include "ripen/untrusted.h"

namespace ripen {
namespace {

struct Delivery {
  uint64_t tag = 0;
  bool redelivered = false;
  std::string body;   // the whole body, or only its first bytes when it is over the size limit
  uint64_t size = 0;  // the body's size, as its content header says
  std::string message_id;
  std::string correlation_id;
  std::string reply_to;
  std::string user_id;  // the publisher's AMQP user, when the message names it (the broker checks it)
};

// What became of one delivery of a batch.
struct Outcome {
  std::optional<Enqueued> task;  // stored, or found already there
  std::string refusal;           // else: why it goes to the ingress dead-letter queue
  const char* code = "invalid";  // and what kind of refusal: "invalid" or "forbidden" (a policy's)
  bool held = false;             // neither: Redis did not answer; the message goes back to the queue
};

std::string optional_prop(const amqp_basic_properties_t& p, amqp_flags_t flag, const amqp_bytes_t& value) {
  return (p._flags & flag) != 0 ? to_string(value) : std::string();
}

// Text from a message quoted in a header or a reply: never so long that the
// header outgrows a frame (the publish would fail and the message come back
// again and again).
constexpr size_t kQuoteMax = 512;
std::string cut(std::string_view text) { return cut_text(text, kQuoteMax); }

bool listed(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}
bool any_or_listed(const std::vector<std::string>& names, const std::string& name) {
  return names.empty() || listed(names, "*") || listed(names, name);
}

// RabbitMQ's direct reply-to: the broker rewrites it per asker, and only that
// asker's channel receives what is sent to it.
constexpr std::string_view kDirectReplyTo = "amq.rabbitmq.reply-to";

// Redis unreachable or saying "not now" (redis_error_code): the batch is held
// and tried again. Any other error (a script error, a key of the wrong type) is
// as deterministic as a validation error: holding the batch for it would stop
// the ingress for good, so the message is refused to the dead-letter queue with
// the reason, like an invalid one.
bool retryable(const Error& e) { return e.code == Errc::unavailable || e.code == Errc::timeout; }

}  // namespace

class Ingress::Impl {
 public:
  Impl(const Config& config, std::string name, Clock& clock)
      : config_(config),
        name_(std::move(name)),
        clock_(clock),
        keys_(config.ns, config.shards),
        allowed_queues_(config.ingress.allowed_queues.empty() ? configured_queues(config)
                                                              : config.ingress.allowed_queues),
        producer_(config, clock),
        amqp_(amqp_url_of(config), std::chrono::seconds(5), clock) {}

  void stop() { stopping_.store(true); }

  IngressStats stats() const {
    std::lock_guard lock(stats_mu_);
    return stats_;
  }

  void run() {
    while (!stopping_.load()) {
      if (redis_down_ && !redis_back()) {
        pause(std::chrono::milliseconds(250));
        continue;
      }
      if (!ensure_connected()) {
        pause(std::chrono::milliseconds(200));
        continue;
      }
      pump(std::chrono::milliseconds(200));
      if (inbox_.empty()) continue;
      std::vector<Delivery> batch;
      const size_t most = static_cast<size_t>(config_.dispatcher.ingress_prefetch);
      while (!inbox_.empty() && batch.size() < most) {
        batch.push_back(std::move(inbox_.front()));
        inbox_.pop_front();
      }
      handle(batch);
    }
    // Whatever is unacked goes back to the queue when the connection closes.
    amqp_.close();
  }

 private:
  // ---- the connection ---------------------------------------------------------

  bool ensure_connected() {
    if (amqp_.connected()) return true;
    Status st = amqp_.ensure_connected();
    if (st) st = declare_ingress(amqp_, keys_, config_.ingress.dead_letter_max_bytes);
    if (st) st = amqp_.confirm_select();
    if (st) st = amqp_.qos(static_cast<uint16_t>(config_.dispatcher.ingress_prefetch));
    if (st) {
      auto tag = amqp_.consume(keys_.ingress_queue());
      if (!tag) st = tag.error();
    }
    if (!st) {
      amqp_log_.fail("ingress: " + st.error().message);
      amqp_.close();
      return false;
    }
    amqp_log_.ok("ingress amqp");
    spdlog::info("ingress {}: consuming '{}' (exchange '{}')", name_, keys_.ingress_queue(), keys_.ingress_exchange());
    inbox_.clear();
    confirms_.clear();
    next_tag_ = 0;
    return true;
  }

  // The broker's frames: deliveries go to the inbox, confirms to confirms_.
  // Waits up to `timeout` for the first frame, then takes what has arrived.
  void pump(std::chrono::milliseconds timeout) {
    bool first = true;
    while (amqp_.connected()) {
      amqp_maybe_release_buffers(amqp_.raw());
      timeval tv{first ? static_cast<time_t>(timeout.count() / 1000) : 0,
                 first ? static_cast<suseconds_t>((timeout.count() % 1000) * 1000) : 0};
      first = false;
      amqp_frame_t frame;
      const int st = amqp_simple_wait_frame_noblock(amqp_.raw(), &frame, &tv);
      if (st == AMQP_STATUS_TIMEOUT) return;
      if (st != AMQP_STATUS_OK) {
        amqp_log_.fail("ingress: " + amqp_.fail(st, "reading frames").message);
        return;
      }
      if (frame.frame_type != AMQP_FRAME_METHOD) continue;
      switch (frame.payload.method.id) {
        case AMQP_BASIC_DELIVER_METHOD: {
          const auto* m = static_cast<amqp_basic_deliver_t*>(frame.payload.method.decoded);
          Delivery d;
          d.tag = m->delivery_tag;
          d.redelivered = m->redelivered != 0;
          if (!read_content(frame.channel, d)) return;
          inbox_.push_back(std::move(d));
          break;
        }
        case AMQP_BASIC_ACK_METHOD:
        case AMQP_BASIC_NACK_METHOD: {
          const bool acked = frame.payload.method.id == AMQP_BASIC_ACK_METHOD;
          uint64_t tag = 0;
          bool multiple = false;
          if (acked) {
            const auto* m = static_cast<amqp_basic_ack_t*>(frame.payload.method.decoded);
            tag = m->delivery_tag;
            multiple = m->multiple != 0;
          } else {
            const auto* m = static_cast<amqp_basic_nack_t*>(frame.payload.method.decoded);
            tag = m->delivery_tag;
            multiple = m->multiple != 0;
          }
          for (auto& [t, outcome] : confirms_) {
            if (outcome == Confirm::waiting && (t == tag || (multiple && t < tag))) {
              outcome = acked ? Confirm::acked : Confirm::nacked;
            }
          }
          break;
        }
        default:
          if (auto closed = amqp_.closed_by(frame, "consuming the ingress")) {
            amqp_log_.fail("ingress: " + closed->message);
            return;
          }
          break;
      }
    }
  }

  // A delivery's content: its header frame (properties and the body's size),
  // then its body frames. A body over max_envelope_bytes is refused, so it is
  // not kept whole: only its first ingress.dead_letter_body_bytes, for the
  // dead-letter copy (the broker still sends it all, and it is read and dropped).
  bool read_content(amqp_channel_t channel, Delivery& d) {
    amqp_frame_t frame;
    auto broken = [&](const std::string& what) {
      amqp_log_.fail("ingress: " + amqp_.fail(AMQP_STATUS_UNEXPECTED_STATE, what).message);
      return false;
    };
    if (int st = amqp_simple_wait_frame(amqp_.raw(), &frame); st != AMQP_STATUS_OK) {
      amqp_log_.fail("ingress: " + amqp_.fail(st, "reading a message's header").message);
      return false;
    }
    if (frame.frame_type != AMQP_FRAME_HEADER || frame.channel != channel) {
      return broken("reading a message: no content header after basic.deliver");
    }
    d.size = frame.payload.properties.body_size;
    const auto& p = *static_cast<const amqp_basic_properties_t*>(frame.payload.properties.decoded);
    d.message_id = optional_prop(p, AMQP_BASIC_MESSAGE_ID_FLAG, p.message_id);
    d.correlation_id = optional_prop(p, AMQP_BASIC_CORRELATION_ID_FLAG, p.correlation_id);
    d.reply_to = optional_prop(p, AMQP_BASIC_REPLY_TO_FLAG, p.reply_to);
    d.user_id = optional_prop(p, AMQP_BASIC_USER_ID_FLAG, p.user_id);
    const uint64_t keep = d.size <= static_cast<uint64_t>(config_.max_envelope_bytes)
                              ? d.size
                              : std::min<uint64_t>(d.size, config_.ingress.dead_letter_body_bytes);
    d.body.reserve(keep);
    for (uint64_t got = 0; got < d.size;) {
      if (int st = amqp_simple_wait_frame(amqp_.raw(), &frame); st != AMQP_STATUS_OK) {
        amqp_log_.fail("ingress: " + amqp_.fail(st, "reading a message's body").message);
        return false;
      }
      if (frame.frame_type != AMQP_FRAME_BODY || frame.channel != channel) {
        return broken("reading a message: a frame other than its body");
      }
      const amqp_bytes_t& part = frame.payload.body_fragment;
      got += part.len;
      if (d.body.size() < keep) {
        d.body.append(static_cast<const char*>(part.bytes), std::min<uint64_t>(part.len, keep - d.body.size()));
      }
      amqp_maybe_release_buffers_on_channel(amqp_.raw(), channel);
    }
    return true;
  }

  void pause(std::chrono::milliseconds d) {
    const auto until = clock_.now() + d;
    while (!stopping_.load() && clock_.now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }

  // ---- Redis outages ------------------------------------------------------------

  // Without Redis nothing can be stored, so the ingress takes nothing: the
  // connection closes (the broker puts back every message not acked, for
  // another dispatcher or for this one once Redis answers) and it consumes
  // again only once Redis answers. Said once per outage, and once when it ends.
  void redis_lost(const std::string& error, size_t held) {
    redis_down_ = true;
    spdlog::error(
        "ingress {}: Redis at {} is unreachable ({}); handing back {} messages and not consuming '{}' until it "
        "answers",
        name_, producer_.redis().url().redacted(), error, held + inbox_.size(), keys_.ingress_queue());
  }

  bool redis_back() {
    if (!producer_.redis().ping()) return false;
    redis_down_ = false;
    spdlog::warn("ingress {}: Redis at {} answers again; consuming '{}' again", name_,
                 producer_.redis().url().redacted(), keys_.ingress_queue());
    return true;
  }

  // ---- one batch -------------------------------------------------------------

  void handle(const std::vector<Delivery>& batch) {
    {
      std::lock_guard lock(stats_mu_);
      stats_.received += batch.size();
    }
    std::vector<Outcome> outcomes(batch.size());
    std::vector<size_t> valid;
    std::vector<Envelope> tasks;
    for (size_t i = 0; i < batch.size(); ++i) {
      auto env = read(batch[i]);
      if (!env) {
        outcomes[i].refusal = env.error().message;
        if (env.error().code == Errc::forbidden) outcomes[i].code = "forbidden";
        continue;
      }
      valid.push_back(i);
      tasks.push_back(std::move(*env));
    }
    if (!store(valid, std::move(tasks), outcomes)) return;  // stopping, or the connection broke: redelivered
    // Refusals first: a message is acked only once its dead-letter copy is confirmed.
    std::vector<size_t> refused;
    std::vector<bool> safe(batch.size(), true);
    for (size_t i = 0; i < batch.size(); ++i) {
      if (outcomes[i].held) {
        safe[i] = false;
      } else if (!outcomes[i].task) {
        refused.push_back(i);
      }
    }
    if (!refused.empty()) dead_letter(batch, outcomes, refused, safe);
    if (!amqp_.connected()) return;
    uint64_t last_safe = 0;
    for (size_t i = 0; i < batch.size(); ++i) {
      if (safe[i]) {
        reply(batch[i], outcomes[i]);
        last_safe = batch[i].tag;
      } else {
        (void)amqp_.nack(batch[i].tag, /*requeue=*/true);
      }
    }
    // One ack for the whole batch, up to its last safe delivery: deliveries are
    // handled in the order they came, so every earlier one is settled already,
    // and the handed-back ones were nacked just now (a tag no longer
    // outstanding must not be acked: the broker would close the channel).
    // Acking each message cost RabbitMQ 38 us of CPU per task where one ack per
    // batch costs 24 (bench/run ingress).
    if (last_safe != 0)
      (void)amqp_.ack(last_safe, /*multiple=*/true);  // if lost: redelivered; identities find the tasks
    if (redis_down_) {
      // What waits in the inbox goes back with the connection (see redis_lost()).
      amqp_.close();
      inbox_.clear();
    }
  }

  // The envelope of a delivery, with its identity for a redelivery (see
  // ingress.h), if the ingress policy lets its publisher enqueue it.
  Result<Envelope> read(const Delivery& d) const {
    const auto& policy = config_.ingress;
    if (d.size > static_cast<uint64_t>(config_.max_envelope_bytes)) {
      return Error{Errc::invalid, "the message is " + std::to_string(d.size) + " bytes, over max_envelope_bytes (" +
                                      std::to_string(config_.max_envelope_bytes) + ")"};
    }
    if (!policy.users.empty() && policy.users.count(d.user_id) == 0) {
      return Error{Errc::forbidden,
                   d.user_id.empty()
                       ? std::string("the message has no user_id, and ingress.users lists who may enqueue")
                       : "user '" + cut(d.user_id) + "' is not in ingress.users"};
    }
    if (is_bundle(d.body)) {
      return Error{Errc::invalid, "the message is a JSON array: publish one envelope (a JSON object) per message"};
    }
    auto env = decode_envelope(d.body, static_cast<size_t>(config_.max_envelope_bytes));
    if (!env) return env;
    if (!listed(allowed_queues_, "*") && !listed(allowed_queues_, env->queue)) {
      return Error{Errc::forbidden, "queue '" + env->queue + "' is not in ingress.allowed_queues" +
                                        (policy.allowed_queues.empty() ? " (by default: the configured queues)" : "")};
    }
    if (!any_or_listed(policy.allowed_types, env->type)) {
      return Error{Errc::forbidden, "type '" + env->type + "' is not in ingress.allowed_types"};
    }
    if (!policy.users.empty() && !any_or_listed(policy.users.at(d.user_id), env->type)) {
      return Error{Errc::forbidden, "user '" + d.user_id + "' may not enqueue type '" + env->type +
                                        "' (ingress.users." + d.user_id + ")"};
    }
    if (auto st = check_caller_key(env->idempotency_key); !st) return st.error();
    if (env->idempotency_key.empty() && env->id.empty() && !d.message_id.empty()) {
      env->idempotency_key = "amqp:" + d.message_id;
    }
    return env;
  }

  // Stores the valid tasks in one round trip, holding the batch while Redis is
  // unreachable. False when it gave up (stopping, or the broker connection broke
  // meanwhile): the batch is left unacked, to be delivered again.
  bool store(const std::vector<size_t>& valid, std::vector<Envelope> tasks, std::vector<Outcome>& outcomes) {
    std::vector<size_t> todo = valid;
    while (!todo.empty()) {
      auto results = producer_.enqueue_batch(tasks);
      std::vector<size_t> again;
      std::vector<Envelope> again_tasks;
      std::string trouble;
      for (size_t k = 0; k < todo.size(); ++k) {
        const size_t i = todo[k];
        auto& r = results[k];
        if (r) {
          outcomes[i].task = *r;
          std::lock_guard lock(stats_mu_);
          ++(r->created ? stats_.enqueued : stats_.duplicates);
        } else if (r.error().code == Errc::conflict && !tasks[k].id.empty()) {
          // The caller chose the id and a task has it: this message, delivered again.
          outcomes[i].task = Enqueued{TaskId(tasks[k].id), false, 0};
          std::lock_guard lock(stats_mu_);
          ++stats_.duplicates;
        } else if (retryable(r.error())) {
          trouble = r.error().message;
          again.push_back(i);
          again_tasks.push_back(std::move(tasks[k]));
        } else if (r.error().code == Errc::invalid || r.error().code == Errc::conflict) {
          outcomes[i].refusal = r.error().message;
        } else {
          outcomes[i].refusal = "could not be stored: " + r.error().message;
        }
      }
      if (again.empty()) break;
      if (auto st = producer_.redis().ping(); !st) {
        for (size_t i : again) outcomes[i].held = true;
        redis_lost(st.error().message, again.size());
        return true;
      }
      // Redis answers, and says "not now" (loading, busy...): held a moment.
      redis_log_.fail("ingress: storing " + std::to_string(again.size()) + " tasks: " + trouble + "; holding them");
      pause(std::chrono::milliseconds(500));
      if (stopping_.load()) return false;
      pump(std::chrono::milliseconds(0));  // confirms and closes; deliveries wait in the inbox
      if (!amqp_.connected()) return false;
      todo = std::move(again);
      tasks = std::move(again_tasks);
    }
    if (!valid.empty()) redis_log_.ok("ingress redis");
    return true;
  }

  // Copies each refused message to the ingress dead-letter queue with its reason
  // and waits for the broker's confirms; safe[i] is false for a copy that was not
  // confirmed (its message is handed back instead).
  void dead_letter(const std::vector<Delivery>& batch, const std::vector<Outcome>& outcomes,
                   const std::vector<size_t>& refused, std::vector<bool>& safe) {
    std::map<size_t, uint64_t> tag_of;
    for (size_t i : refused) {
      const Delivery& d = batch[i];
      spdlog::warn("ingress {}: refused message {}: {}", name_,
                   d.message_id.empty() ? "(no message_id)" : cut(d.message_id), cut(outcomes[i].refusal));
      AmqpMessageProps props;
      props.message_id = d.message_id;
      props.correlation_id = d.correlation_id;
      props.headers = {{"x-ripen-reason", cut(outcomes[i].refusal)}, {"x-ripen-dispatcher", name_}};
      if (!d.reply_to.empty()) props.headers.emplace_back("x-ripen-reply-to", cut(d.reply_to));
      if (!d.user_id.empty()) props.headers.emplace_back("x-ripen-user-id", cut(d.user_id));
      if (d.body.size() < d.size) props.headers.emplace_back("x-ripen-truncated-from", static_cast<int64_t>(d.size));
      // Never through Amqp's reconnect: the batch's delivery tags belong to this connection.
      if (!amqp_.connected()) {
        safe.assign(batch.size(), false);
        return;
      }
      if (auto st = amqp_.publish(keys_.dead_exchange(), std::string(Keys::kIngress), d.body, props, false); !st) {
        amqp_log_.fail("ingress: " + st.error().message);
        safe.assign(batch.size(), false);
        return;
      }
      tag_of[i] = ++next_tag_;
      confirms_[next_tag_] = Confirm::waiting;
    }
    const auto deadline = clock_.now() + std::chrono::seconds(5);
    auto waiting = [&] {
      for (const auto& [i, tag] : tag_of) {
        if (confirms_[tag] == Confirm::waiting) return true;
      }
      return false;
    };
    while (amqp_.connected() && waiting() && clock_.now() < deadline && !stopping_.load()) {
      pump(std::chrono::milliseconds(50));
    }
    for (const auto& [i, tag] : tag_of) {
      const Confirm confirm = confirms_[tag];
      confirms_.erase(tag);
      if (confirm == Confirm::nacked) {
        // The dead-letter queue is full (ingress.dead_letter_max_bytes; it
        // rejects what comes over). Handing the message back would bring it
        // round again and again: the refused message is dropped. It never was
        // a task, so no task is lost.
        spdlog::error("ingress {}: the ingress dead-letter queue is full; refused message {} dropped: {}", name_,
                      batch[i].message_id.empty() ? "(no message_id)" : cut(batch[i].message_id), outcomes[i].refusal);
        std::lock_guard lock(stats_mu_);
        ++stats_.dropped;
        continue;
      }
      safe[i] = confirm == Confirm::acked;
      if (safe[i]) {
        std::lock_guard lock(stats_mu_);
        ++stats_.refused;
      }
    }
  }

  // Whether a reply may go to `reply_to`: the default exchange routes a reply
  // to the queue of that name, so any name would let a publisher drop JSON
  // into any queue of the vhost.
  bool may_reply_to(const std::string& reply_to) const {
    const std::string& prefix = config_.ingress.reply_to_prefix;
    return reply_to.rfind(kDirectReplyTo, 0) == 0 || (!prefix.empty() && reply_to.rfind(prefix, 0) == 0);
  }

  void reply(const Delivery& d, const Outcome& o) {
    if (d.reply_to.empty() || !amqp_.connected()) return;
    if (!may_reply_to(d.reply_to)) {
      spdlog::warn("ingress {}: message {}: no reply to '{}': replies go to amq.rabbitmq.reply-to{}", name_,
                   d.message_id.empty() ? "(no message_id)" : cut(d.message_id), cut(d.reply_to),
                   config_.ingress.reply_to_prefix.empty()
                       ? std::string()
                       : " or queues named '" + config_.ingress.reply_to_prefix + "...'");
      std::lock_guard lock(stats_mu_);
      ++stats_.replies_refused;
      return;
    }
    nlohmann::json body;
    if (o.task) {
      body = {{"ok", true}, {"id", o.task->id.get()}, {"created", o.task->created}, {"due_ms", o.task->due_ms}};
    } else {
      body = {{"ok", false}, {"code", o.code}, {"error", cut(o.refusal)}};
    }
    AmqpMessageProps props;
    props.correlation_id = d.correlation_id;
    props.persistent = false;
    // The default exchange routes to the queue named reply_to. A reply that
    // finds no queue (its asker gave up) is dropped by the broker, which is fine.
    if (auto st = amqp_.publish("", d.reply_to, body.dump(), props, false); !st) return;
    ++next_tag_;  // its confirm is not waited for
    std::lock_guard lock(stats_mu_);
    ++stats_.replies;
  }

  Config config_;
  std::string name_;
  Clock& clock_;
  Keys keys_;
  const std::vector<std::string> allowed_queues_;  // ingress.allowed_queues, or the configured queues
  Producer producer_;
  bool redis_down_ = false;  // Redis did not answer: not consuming (see redis_lost())
  Amqp amqp_;
  std::atomic<bool> stopping_{false};

  std::deque<Delivery> inbox_;  // delivered, not yet handled
  enum class Confirm { waiting, acked, nacked };
  std::map<uint64_t, Confirm> confirms_;  // publish tag -> its confirm (dead-letter copies)
  uint64_t next_tag_ = 0;                 // of the last publish on this channel

  mutable std::mutex stats_mu_;
  IngressStats stats_;
  FailureLog redis_log_{clock_}, amqp_log_{clock_};
};

Ingress::Ingress(const Config& config, std::string name, Clock& clock)
    : impl_(std::make_unique<Impl>(config, std::move(name), clock)) {}
Ingress::~Ingress() = default;
void Ingress::run() { impl_->run(); }
void Ingress::stop() { impl_->stop(); }
IngressStats Ingress::stats() const { return impl_->stats(); }

}  // namespace ripen
