#include "ripen/dispatcher.h"

#include <amqp.h>  // before amqp_framing.h, which needs its types
#include <amqp_framing.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <deque>
#include <map>
#include <random>
#include <string_view>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "ripen/amqp.h"
#include "ripen/bundling.h"
#include "ripen/envelope.h"
#include "ripen/failure_log.h"
#include "ripen/keys.h"
#include "ripen/redis.h"
#include "ripen/scripts.h"
#include "ripen/stored_task.h"
#include "ripen/topology.h"
#include "ripen/untrusted.h"

namespace ripen {

ShardPlan plan_shards(int shards, int live, int rank, const std::set<int>& held) {
  ShardPlan plan;
  live = std::max(live, 1);
  rank = std::clamp(rank, 0, live - 1);
  // Our share is exactly the shards we prefer; the shares of all ranks add up to
  // `shards`, so a settled fleet is as even as it can be (16 over 3: 6, 5, 5).
  plan.target = shards / live + (rank < shards % live ? 1 : 0);
  auto preferred = [&](int s) { return s % live == rank; };
  // Give back shards that belong to another dispatcher's share while holding more
  // than ours: that is how a newcomer gets work without anyone waiting for a lease
  // to expire.
  int count = static_cast<int>(held.size());
  for (int s : held) {
    if (count <= plan.target) break;
    if (!preferred(s)) {
      plan.release.push_back(s);
      --count;
    }
  }
  for (int s = 0; s < shards; ++s) {
    if (preferred(s) && held.count(s) == 0) plan.acquire.push_back(s);
  }
  for (int s = 0; s < shards; ++s) {
    if (!preferred(s) && held.count(s) == 0) plan.acquire.push_back(s);
  }
  return plan;
}

namespace {

std::string default_owner() {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  std::mt19937 rng{std::random_device{}()};
  return std::string(host) + ":" + std::to_string(getpid()) + ":" + std::to_string(rng() % 100000);
}

// A claimed task, from its claim until its publish is settled.
struct Claimed {
  int shard = 0;
  std::string id;
  int64_t deadline = 0;  // the in-flight lease of its claim: names that claim in settle()
};

// A claimed task waiting, with the others of its queue claimed in the same
// round, to be published.
struct Outgoing {
  Claimed claimed;
  std::string envelope;  // its JSON
  int priority = 0;      // the task's, 0..kMaxPriority
};

// One outstanding publish (one task, or a bundle of them), waiting for the
// broker's confirm.
struct Pending {
  uint64_t tag = 0;
  std::vector<Claimed> tasks;
  std::string message_id;  // the first task's id: how a basic.return names the publish
  // What its confirm settles: confirm (a task message), or unroutable (the
  // dead-letter copy of a returned one).
  scripts::SettleOutcome outcome = scripts::SettleOutcome::confirm;
  std::string reason;     // unroutable: why
  bool returned = false;  // returned unroutable: its dead-letter copies settle its tasks instead
};

// How often the dispatcher renews its leases and heartbeat, sweeps its shards
// for lost tasks and checks the queues' backlogs: a quarter of the shard lease,
// at most a second.
std::chrono::milliseconds maintenance_every(const DispatcherConfig& d) {
  return std::chrono::milliseconds(std::clamp<int64_t>(d.shard_lease_ms / 4, 50, 1000));
}

// A queue's backlog as last seen, for the sweep: a task of a queue with
// messages waiting may simply be waiting its turn.
struct Backlog {
  bool clear = false;  // no message ready in the broker (or the queue is gone)
  Clock::time_point seen;
};
constexpr auto kBacklogFresh = std::chrono::seconds(10);

}  // namespace

class Dispatcher::Impl {
 public:
  Impl(const Config& config, std::string owner, Clock& clock)
      : config_(config),
        clock_(clock),
        owner_(owner.empty() ? default_owner() : std::move(owner)),
        keys_(config.ns, config.shards),
        redis_(redis_url_of(config), std::chrono::seconds(5), clock),
        sub_(redis_url_of(config), std::chrono::seconds(5), clock),
        amqp_(amqp_url_of(config), std::chrono::seconds(5), clock),
        inspector_(amqp_url_of(config), std::chrono::seconds(5), clock),
        stop_fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)),
        next_due_(static_cast<size_t>(config.shards), Clock::time_point::max()),
        ingress_(config.dispatcher.ingress ? std::make_unique<Ingress>(config, owner_, clock) : nullptr),
        scheduler_(config, owner_, clock) {}

  ~Impl() { close(stop_fd_); }

  void stop() {
    stopping_.store(true);
    if (ingress_) ingress_->stop();
    scheduler_.stop();
    uint64_t one = 1;
    [[maybe_unused]] auto n = write(stop_fd_, &one, sizeof one);
  }

  DispatcherStats stats() const {
    std::lock_guard lock(stats_mu_);
    DispatcherStats s = stats_;
    if (ingress_) s.ingress = ingress_->stats();
    s.schedules = scheduler_.stats();
    for (const auto& [shard, lease] : owned_) s.shards.push_back(shard);
    return s;
  }

  const std::string& owner() const { return owner_; }

  void run() {
    spdlog::info("dispatcher {} starting: {} shards, namespace '{}', redis {}, amqp {}", owner_, config_.shards,
                 config_.ns, redis_.url().redacted(), amqp_.url().redacted());
    // Redis before the broker: an ingress that cannot store what it takes
    // would sit on the messages (RedisUnreachable past the bound).
    if (!await_redis(redis_, std::chrono::milliseconds(config_.redis_startup_timeout_ms), stopping_,
                     "dispatcher " + owner_, clock_)) {
      spdlog::info("dispatcher {} stopped before Redis answered", owner_);
      return;
    }
    if (ingress_) ingress_thread_ = std::thread([this] { ingress_->run(); });
    scheduler_thread_ = std::thread([this] { scheduler_.run(); });
    auto last_report = clock_.now();
    while (!stopping_.load()) {
      const auto now = clock_.now();
      if (now >= next_maintenance_) maintain_shards();
      if (now >= next_paused_read_) read_paused();
      ensure_subscribed();
      if (!ensure_amqp()) {
        flush_settles();  // what was confirmed before the broker went away
        wait(std::chrono::milliseconds(200));
        continue;
      }
      if (blocked_) {
        // The broker is not reading what we publish (a resource alarm): claim
        // nothing, so no task waits in flight behind it; settle what it
        // confirmed and watch for the unblock.
        flush_settles();
        pump_amqp(std::chrono::milliseconds(100));
        continue;
      }
      // Settles go first in the same round trip as the claims: after a Redis
      // outage, a confirm not yet written must not look like an expired lease to
      // the claim script (a needless re-publish).
      const bool claimed = now >= next_round_ && claim_round();
      if (now - last_report >= std::chrono::seconds(10)) {
        report();
        last_report = now;
      }
      if (claimed && window_space() > 0) {
        // More may be ripe; only drain what the broker already said.
        pump_amqp(std::chrono::milliseconds(0));
        continue;
      }
      wait(sleep_budget());
    }
    shutdown();
  }

 private:
  // ---- shards ----------------------------------------------------------------

  void maintain_shards() {
    next_maintenance_ = clock_.now() + maintenance_every(config_.dispatcher);
    const int64_t ttl = config_.dispatcher.shard_lease_ms;
    // The heartbeat and the renewal of every lease held, in one round trip:
    // one at a time they held up claims for a round trip per shard.
    redis_.append_eval(scripts::heartbeat(), {keys_.dispatchers()}, {owner_, std::to_string(ttl)});
    std::vector<int> renewing;
    for (const auto& [shard, lease] : owned_) {
      scripts::append_take_lease(redis_, keys_.lease(shard), keys_.fence(shard), owner_, ttl);
      renewing.push_back(shard);
    }
    auto replies = redis_.flush();
    if (!replies || !replies->front()) {
      redis_log_.fail("redis: dispatcher heartbeat failed: " +
                      (replies ? replies->front().error().message : replies.error().message));
      return;
    }
    redis_log_.ok("redis");
    const RedisReply& live = *replies->front();
    int rank = 0;
    const int count = static_cast<int>(live.size());
    for (int i = 0; i < count; ++i) {
      if (live.at(static_cast<size_t>(i)).sv() == owner_) rank = i;
    }
    // What we hold; a lease we lost (we stalled past its expiry) is gone.
    std::set<int> held;
    for (size_t i = 0; i < renewing.size(); ++i) {
      const int shard = renewing[i];
      const auto& r = (*replies)[1 + i];
      if (!r) return;  // redis trouble: keep what we have; the claim script fences us if needed
      if (scripts::read_lease(*r) == owned_[shard]) {
        held.insert(shard);
      } else {
        spdlog::warn("shard {}: lease lost to another dispatcher", shard);
        std::lock_guard lock(stats_mu_);
        owned_.erase(shard);
      }
    }
    ShardPlan plan = plan_shards(config_.shards, count, rank, held);
    for (int s : plan.release) {
      auto it = owned_.find(s);
      (void)scripts::release_held(redis_, keys_.lease(s), it->second);
      std::lock_guard lock(stats_mu_);
      owned_.erase(it);
      spdlog::info("shard {}: given back for rebalancing ({} dispatchers live)", s, count);
    }
    for (int s : plan.acquire) {
      if (static_cast<int>(owned_.size()) >= plan.target) break;
      auto r = scripts::take_lease(redis_, keys_.lease(s), keys_.fence(s), owner_, ttl);
      if (r && *r) {
        std::lock_guard lock(stats_mu_);
        owned_[s] = **r;
        next_due_[static_cast<size_t>(s)] = Clock::time_point::min();  // look at it now
        spdlog::info("shard {}: acquired (lease {})", s, **r);
      }
    }
    sweep();
  }

  // Looks for tasks whose message the broker lost (sweep.lua): one script run
  // over every owned shard. The queues of tasks it held back for a backlog are
  // checked now, so the next sweep knows which are clear.
  void sweep() {
    if (owned_.empty()) return;
    const auto now = clock_.now();
    std::vector<std::string> clear;
    for (const auto& [queue, b] : backlogs_) {
      if (b.clear && now - b.seen < kBacklogFresh) clear.push_back(queue);
    }
    const int64_t lost_after = config_.dispatcher.lost_after_ms;
    scripts::SweepCall call(keys_, lost_after, std::clamp<int64_t>(lost_after / 10, 1000, 30'000), 200);
    std::vector<int> shards;
    for (const auto& [shard, lease] : owned_) {
      call.add(shard, lease, clear);
      shards.push_back(shard);
    }
    call.append_to(redis_);
    auto replies = redis_.flush();
    if (!replies || !replies->front()) return;  // the claim path reports Redis trouble
    std::set<std::string> held_queues;
    for (size_t i = 0; i < shards.size(); ++i) {
      const scripts::SweepReply r = scripts::SweepCall::read(replies->front()->at(i));
      if (r.fenced) continue;  // the next claim gives the shard up
      if (r.swept > 0) {
        spdlog::warn(
            "shard {}: {} tasks published or started over {} ms ago were never heard of again (their "
            "message was lost); publishing them again",
            shards[i], r.swept, lost_after);
        next_due_[static_cast<size_t>(shards[i])] = Clock::time_point::min();
        std::lock_guard lock(stats_mu_);
        stats_.lost += static_cast<uint64_t>(r.swept);
      }
      held_queues.insert(r.queues.begin(), r.queues.end());
    }
    for (const auto& queue : held_queues) backlogs_[queue] = {queue_is_clear(queue), clock_.now()};
  }

  // Whether a queue has no message ready in the broker, asked on a connection
  // of its own (a passive declare of a queue that is gone closes the channel).
  bool queue_is_clear(const std::string& queue) {
    auto n = inspector_.queue_message_count(keys_.queue(queue));
    if (n) return *n == 0;
    // Gone (deleted with its messages): clear. Anything else: unknown, so held.
    return n.error().message.find("NOT_FOUND") != std::string::npos;
  }

  // The paused queues, read every half second: a task of one that ripens is held
  // back (outcome 'p') instead of published. The settle script checks the
  // shard's own flag, so a queue resumed meanwhile is never held.
  void read_paused() {
    next_paused_read_ = clock_.now() + std::chrono::milliseconds(500);
    auto r = redis_.command({"SMEMBERS", keys_.paused_queues()});
    if (!r) return;  // the claim path logs Redis trouble; keep what we knew
    std::set<std::string> paused;
    for (size_t i = 0; i < r->size(); ++i) paused.insert(r->at(i).str());
    for (const auto& q : paused) {
      if (paused_.count(q) == 0) spdlog::info("queue '{}' is paused: its ripe tasks stay in the wheel", q);
    }
    for (const auto& q : paused_) {
      if (paused.count(q) == 0) spdlog::info("queue '{}' is resumed", q);
    }
    paused_ = std::move(paused);
  }

  // A clean stop gives the shards back and leaves the live dispatchers at once:
  // a dispatcher started next (a restart) then counts itself alone and takes
  // every shard, instead of its share beside a ghost until the heartbeat lapses.
  void release_shards() {
    for (const auto& [s, lease] : owned_) scripts::append_release_held(redis_, keys_.lease(s), lease);
    redis_.append({"ZREM", keys_.dispatchers(), owner_});
    (void)redis_.flush();
    std::lock_guard lock(stats_mu_);
    owned_.clear();
  }

  // ---- claim and publish -------------------------------------------------------

  // The confirm window counts tasks, not messages: it bounds how much is
  // published again if this dispatcher dies before the confirms are written.
  int window_space() const { return config_.dispatcher.confirm_window - pending_tasks_; }

  // One round trip to Redis: the confirms waiting to be written, then a claim on
  // every owned shard that may have ripe tasks, sharing what the confirm window
  // allows between them. Publishes what was claimed; returns whether anything was.
  bool claim_round() {
    const auto now = clock_.now();
    // At most one round per tick: under load, the tasks that ripen within a
    // tick are claimed together and share messages; a task due while nothing
    // was claimed for a tick is still taken at once.
    next_round_ = now + std::chrono::milliseconds(config_.dispatcher.tick_ms);
    // Shards whose next task ripens within this tick join a round that claims
    // anyway. A burst is spread over the shards by id, and each shard's due time
    // is kept by this clock from its own reply, read a moment after the one
    // before (much more than a moment in a slow, sanitized build): without this,
    // a burst due at one instant could straddle two rounds a tick apart, and
    // then could not be cut into equal bundles (fairness_itest). Nothing is
    // claimed early: the claim compares due times with Redis TIME.
    const auto joins = now + std::chrono::milliseconds(config_.dispatcher.tick_ms);
    std::vector<int> ripe;
    bool any_ripe = false;
    for (const auto& [s, lease] : owned_) {
      const auto due = next_due_[static_cast<size_t>(s)];
      if (due <= joins) ripe.push_back(s);
      any_ripe = any_ripe || due <= now;
    }
    if (!any_ripe) ripe.clear();
    const int space = window_space();
    const int per_shard =
        ripe.empty() ? 0 : std::max(1, std::min(config_.dispatcher.batch, space / static_cast<int>(ripe.size())));
    const std::vector<int> settled = append_settles();
    std::vector<int> claimed;
    if (space > 0 && !ripe.empty()) {
      // Every ripe shard in one script run: one section each.
      scripts::ClaimCall call(keys_, config_.dispatcher.inflight_lease_ms);
      for (int s : ripe) {
        call.add(s, owned_[s], per_shard);
        claimed.push_back(s);
      }
      call.append_to(redis_);
    }
    if (settled.empty() && claimed.empty()) return false;
    auto replies = redis_.flush();
    if (!replies) {
      // Settles are kept for the next round; if we die first, the in-flight leases
      // expire and the tasks are published again.
      redis_log_.fail("redis: settling and claiming: " + replies.error().message);
      for (int s : claimed) next_due_[static_cast<size_t>(s)] = clock_.now() + std::chrono::milliseconds(200);
      return false;
    }
    redis_log_.ok("redis");
    on_settled(settled, *replies);
    bool any = false;
    if (!claimed.empty()) {
      const auto& reply = replies->back();
      for (size_t i = 0; i < claimed.size(); ++i) {
        if (!reply) {
          on_claim_failed(claimed[i], reply.error());
        } else {
          any |= on_claim(claimed[i], per_shard, reply->at(i));
        }
      }
    }
    publish_outbox();
    return any;
  }

  void on_claim_failed(int shard, const Error& e) {
    spdlog::error("claim on shard {}: {}", shard, e.message);
    next_due_[static_cast<size_t>(shard)] = clock_.now() + std::chrono::milliseconds(200);
  }

  // Acts on one shard's claim reply: its tasks go to the outbox; returns whether any.
  bool on_claim(int shard, int batch, RedisReply::View r) {
    auto it = owned_.find(shard);
    if (it == owned_.end()) return false;
    const scripts::ClaimReply claim = scripts::ClaimCall::read(r);
    if (claim.fenced) {
      spdlog::warn("shard {}: fenced off by a newer lease; giving it up", shard);
      std::lock_guard lock(stats_mu_);
      owned_.erase(it);
      return false;
    }
    const size_t items = claim.tasks.size();
    {
      std::lock_guard lock(stats_mu_);
      stats_.claimed += items;
      stats_.recovered += static_cast<uint64_t>(claim.recovered);
    }
    if (claim.recovered > 0)
      spdlog::warn("shard {}: {} in-flight tasks outlived their lease; publishing again", shard, claim.recovered);
    // When the next task ripens (or an in-flight lease expires), as a local
    // deadline, but never later than max_poll: a wake-up lost while the
    // subscriber reconnected must not leave a shard unlooked-at. If the batch was
    // full there may be more ripe right now.
    auto& wake = next_due_[static_cast<size_t>(shard)];
    const auto poll_bound = clock_.now() + std::chrono::milliseconds(config_.dispatcher.max_poll_ms);
    if (static_cast<int>(items) >= batch && batch > 0) {
      wake = Clock::time_point::min();
    } else if (claim.next_ms < 0) {
      wake = poll_bound;
    } else {
      wake = std::min(poll_bound,
                      clock_.now() + std::chrono::milliseconds(std::max<int64_t>(claim.next_ms - claim.now_ms, 0)));
    }
    const int64_t deadline = claim.lease_deadline;
    std::vector<int64_t> late;  // recorded under one lock after the loop
    late.reserve(items);
    for (const auto& t : claim.tasks) {
      std::string id(t.id);
      const auto task = parse_stored_task(t.task);
      if (!task) {
        // Cannot happen unless something else wrote the key; never drop it silently.
        spdlog::error("task {}: its stored form is malformed; dead-lettering it", id);
        settles_[shard].push_back(
            {std::move(id), scripts::SettleOutcome::unroutable, deadline, "stored task is malformed"});
        continue;
      }
      late.push_back(lateness_ms(claim.now_ms, t.due_ms, task->created_ms));
      if (!paused_.empty() && paused_.count(std::string(task->queue)) != 0) {
        settles_[shard].push_back({std::move(id), scripts::SettleOutcome::hold, deadline, std::string(task->queue)});
        std::lock_guard lock(stats_mu_);
        ++stats_.held;
        continue;
      }
      outbox_[std::string(task->queue)].push_back(
          {Claimed{shard, id, deadline}, envelope_json(id, *task), stored_priority(*task)});
    }
    {
      std::lock_guard lock(stats_mu_);
      for (const int64_t ms : late) stats_.lateness.record(ms);
    }
    return items > 0;
  }

  bool ensure_queue(const std::string& queue) {
    using AutoDeclare = DispatcherConfig::AutoDeclare;
    if (declared_.count(queue) != 0) return true;
    // A queue no one configured is not made on a task's word (each name would
    // be a durable queue and a dead-letter queue): its tasks are published
    // and, unless a worker declared the queue, come back unroutable and end
    // dead with the reason.
    const auto mode = config_.dispatcher.auto_declare;
    if (mode == AutoDeclare::none || (mode == AutoDeclare::configured && configured_.count(queue) == 0)) return true;
    if (auto st = declare_queue(amqp_, keys_, queue); !st) {
      spdlog::error("declaring queue '{}': {}", queue, st.error().message);
      release_pending();
      return false;
    }
    declared_.insert(queue);
    return true;
  }

  // Publishes what this round claimed: per queue, in messages of up to
  // dispatcher.bundle tasks. Only tasks that ripened together share a message, so
  // no task waits for company; under load, one persisted and confirmed broker
  // message carries many tasks, which is what lets the pipeline outrun the
  // broker's one-message-per-task rate. The messages come in equal parts, as
  // many as the queue has consumers or a multiple (bundle_sizes), so a burst
  // spreads over every worker instead of landing whole on one.
  void publish_outbox() {
    const size_t bundle = static_cast<size_t>(std::max(config_.dispatcher.bundle, 1));
    for (auto& [queue, tasks] : outbox_) {
      const size_t consumers = tasks.size() > 1 && bundle > 1 ? consumers_of(queue) : 1;
      // Higher priorities first, each in messages of its own (a message has one
      // priority); due order within one.
      std::stable_sort(tasks.begin(), tasks.end(),
                       [](const Outgoing& a, const Outgoing& b) { return a.priority > b.priority; });
      std::vector<size_t> sizes;
      for (size_t from = 0; from < tasks.size();) {
        size_t to = from + 1;
        while (to < tasks.size() && tasks[to].priority == tasks[from].priority) ++to;
        for (const size_t size : bundle_sizes(to - from, bundle, consumers)) sizes.push_back(size);
        from = to;
      }
      size_t at = 0;
      for (const size_t size : sizes) {
        const size_t end = at + size;
        if (!amqp_.connected() || !publish(queue, tasks, at, end)) {
          // The connection broke: these go back to the wheel.
          std::lock_guard lock(stats_mu_);
          for (size_t k = at; k < end; ++k) {
            const Claimed& c = tasks[k].claimed;
            settles_[c.shard].push_back({c.id, scripts::SettleOutcome::release, c.deadline, ""});
            ++stats_.released;
          }
        }
        at = end;
      }
    }
    outbox_.clear();
  }

  // How many consumers `queue` has, as the broker said at most a second ago
  // (kConsumersFresh); until it has said, or when it cannot be asked, the last
  // answer or 1. Asked on the inspector's connection, so a queue that is gone
  // closes no channel a publish is on.
  size_t consumers_of(const std::string& queue) {
    auto& c = consumers_[queue];
    const auto now = clock_.now();
    if (now - c.asked >= kConsumersFresh) {
      c.asked = now;
      if (auto n = inspector_.queue_counts(keys_.queue(queue))) c.count = std::max<uint32_t>(n->consumers, 1);
    }
    return c.count;
  }

  // Publishes tasks[at, end) of one queue as one message.
  bool publish(const std::string& queue, std::vector<Outgoing>& tasks, size_t at, size_t end) {
    if (!ensure_queue(queue)) return false;
    std::string body;
    if (end - at == 1) {
      body = std::move(tasks[at].envelope);
    } else {
      std::vector<std::string_view> parts;
      parts.reserve(end - at);
      for (size_t k = at; k < end; ++k) parts.emplace_back(tasks[k].envelope);
      body = encode_bundle(parts);
    }
    AmqpMessageProps props;
    props.message_id = tasks[at].claimed.id;
    if (tasks[at].priority > 0) props.priority = static_cast<uint8_t>(tasks[at].priority);
    if (auto st = amqp_.publish(keys_.task_exchange(), queue, body, props, /*mandatory=*/true); !st) {
      amqp_log_.fail(st.error().message);
      release_pending();
      return false;
    }
    {
      std::lock_guard lock(stats_mu_);
      ++stats_.messages;
    }
    Pending p;
    p.tag = ++next_tag_;
    p.message_id = props.message_id;
    p.tasks.reserve(end - at);
    for (size_t k = at; k < end; ++k) p.tasks.push_back(std::move(tasks[k].claimed));
    track(std::move(p));
    return true;
  }

  void track(Pending p) {
    pending_tasks_ += static_cast<int>(p.tasks.size());
    pending_.push_back(std::move(p));
  }

  // ---- confirms ------------------------------------------------------------------

  // Reads whatever the broker has sent, waiting up to `timeout` for the first frame.
  void pump_amqp(std::chrono::milliseconds timeout) {
    if (!amqp_.connected()) return;
    timeval tv{};
    bool first = true;
    while (amqp_.connected()) {
      amqp_frame_t frame;
      tv.tv_sec = first ? static_cast<time_t>(timeout.count() / 1000) : 0;
      tv.tv_usec = first ? static_cast<suseconds_t>((timeout.count() % 1000) * 1000) : 0;
      first = false;
      int st = amqp_simple_wait_frame_noblock(amqp_.raw(), &frame, &tv);
      if (st == AMQP_STATUS_TIMEOUT) return;
      if (st != AMQP_STATUS_OK) {
        amqp_log_.fail(amqp_.fail(st, "reading confirms").message);
        release_pending();
        return;
      }
      if (frame.frame_type != AMQP_FRAME_METHOD) continue;
      if (auto b = Amqp::blocked_by(frame)) {
        on_blocked(*b);
        continue;
      }
      switch (frame.payload.method.id) {
        case AMQP_BASIC_ACK_METHOD: {
          auto* m = static_cast<amqp_basic_ack_t*>(frame.payload.method.decoded);
          confirm(m->delivery_tag, m->multiple != 0, true);
          break;
        }
        case AMQP_BASIC_NACK_METHOD: {
          auto* m = static_cast<amqp_basic_nack_t*>(frame.payload.method.decoded);
          confirm(m->delivery_tag, m->multiple != 0, false);
          break;
        }
        case AMQP_BASIC_RETURN_METHOD: {
          auto* m = static_cast<amqp_basic_return_t*>(frame.payload.method.decoded);
          on_return(to_string(m->reply_text), to_string(m->routing_key));
          break;
        }
        default:
          if (auto closed = amqp_.closed_by(frame, "publishing")) {
            amqp_log_.fail(closed->message);
            release_pending();
            return;
          }
          break;
      }
    }
  }

  // The broker's resource alarm: while it lasts the broker reads nothing we
  // publish, so claiming would only pile tasks up in flight (their lease
  // running) behind a socket that does not move.
  void on_blocked(const AmqpBlocked& b) {
    if (b.blocked == blocked_) return;
    blocked_ = b.blocked;
    if (blocked_) {
      spdlog::warn("dispatcher {}: the broker blocked publishing ({}); claiming nothing until it unblocks", owner_,
                   b.reason);
    } else {
      spdlog::info("dispatcher {}: the broker unblocked publishing; claiming again", owner_);
    }
    std::lock_guard lock(stats_mu_);
    stats_.blocked = blocked_;
  }

  void on_return(const std::string& reply_text, const std::string& routing_key) {
    amqp_message_t msg;
    auto r = amqp_read_message(amqp_.raw(), Amqp::kChannel, &msg, 0);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
      amqp_log_.fail(amqp_.check(r, "reading a returned message").error().message);
      release_pending();
      return;
    }
    const std::string message_id =
        (msg.properties._flags & AMQP_BASIC_MESSAGE_ID_FLAG) ? to_string(msg.properties.message_id) : "";
    const std::string body = to_string(msg.body);
    amqp_destroy_message(&msg);
    // The publish it was: still outstanding, since its confirm follows the return.
    auto original = std::find_if(pending_.begin(), pending_.end(), [&](const Pending& p) {
      return p.outcome == scripts::SettleOutcome::confirm && !p.returned && p.message_id == message_id;
    });
    if (original == pending_.end()) {
      spdlog::error("a message returned by the broker ({}) matches no publish awaiting its confirm; ignoring it",
                    message_id);
      return;
    }
    original->returned = true;
    const std::string reason = "unroutable: no queue bound for '" + routing_key + "' on exchange '" +
                               keys_.task_exchange() + "' (" + reply_text + ")";
    // Each task gets its own copy in the dead-letter queue for unroutable tasks,
    // with the reason, so an operator can see and replay it. A task is settled as
    // dead by its copy's confirm, not the original's: until the copy is safe in
    // the broker the task stays in flight, and comes back if the connection
    // breaks first.
    const std::vector<std::string> envelopes = split_message(body, original->tasks.size());
    const std::vector<Claimed> tasks = original->tasks;
    for (size_t i = 0; i < tasks.size(); ++i) {
      const Claimed& t = tasks[i];
      spdlog::error("task {} returned by the broker: {}; dead-lettering it", t.id, reason);
      AmqpMessageProps props;
      props.message_id = t.id;
      props.headers = {{"x-ripen-reason", reason}, {"x-ripen-queue", routing_key}};
      if (auto st = amqp_.publish(keys_.dead_exchange(), std::string(Keys::kUnroutable), envelopes[i], props, false);
          !st) {
        release_pending();
        return;
      }
      Pending copy;
      copy.tag = ++next_tag_;
      copy.tasks = {t};
      copy.message_id = t.id;
      copy.outcome = scripts::SettleOutcome::unroutable;
      copy.reason = reason;
      track(std::move(copy));
    }
  }

  // The envelopes of a message body holding `count` tasks: the body itself, or
  // the elements of a bundle.
  static std::vector<std::string> split_message(const std::string& body, size_t count) {
    if (count <= 1) return {body};
    std::vector<std::string> out;
    // Bounded like the workers' decode: the body came from Redis, and a document
    // nested deeper than that would overflow the stack in dump().
    auto doc = parse_json_bounded(body, kMaxJsonDepth + 1);
    if (doc && doc->is_array()) {
      for (const auto& e : *doc) out.push_back(e.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    }
    // We built the bundle, so this cannot fail; if it did, keep each task's copy whole.
    if (out.size() != count) out.assign(count, body);
    return out;
  }

  void confirm(uint64_t tag, bool multiple, bool acked) {
    while (!pending_.empty() && (multiple ? pending_.front().tag <= tag : pending_.front().tag == tag)) {
      settle_one(pending_.front(), acked);
      pending_.pop_front();
      if (!multiple) return;
    }
    if (!multiple) {
      // Confirms for single tags can arrive out of order.
      auto it = std::find_if(pending_.begin(), pending_.end(), [&](const Pending& p) { return p.tag == tag; });
      if (it != pending_.end()) {
        settle_one(*it, acked);
        pending_.erase(it);
      }
    }
  }

  void settle_one(const Pending& p, bool acked) {
    pending_tasks_ -= static_cast<int>(p.tasks.size());
    // The broker acks a returned publish too; its dead-letter copies settle its tasks.
    if (acked && p.returned) return;
    const scripts::SettleOutcome outcome = acked ? p.outcome : scripts::SettleOutcome::release;
    std::lock_guard lock(stats_mu_);
    for (const auto& t : p.tasks) settles_[t.shard].push_back({t.id, outcome, t.deadline, acked ? p.reason : ""});
    const uint64_t n = p.tasks.size();
    switch (outcome) {
      case scripts::SettleOutcome::release:
        stats_.released += n;
        break;
      case scripts::SettleOutcome::unroutable:
        stats_.returned += n;
        break;
      default:
        stats_.confirmed += n;
        break;
    }
  }

  // The connection is gone, so no confirm will come for what is outstanding:
  // put it all back in the wheel to be published again (at-least-once).
  void release_pending() {
    std::lock_guard lock(stats_mu_);
    for (const auto& p : pending_) {
      for (const auto& t : p.tasks) {
        settles_[t.shard].push_back({t.id, scripts::SettleOutcome::release, t.deadline, ""});
        ++stats_.released;
      }
    }
    pending_.clear();
    pending_tasks_ = 0;
    declared_.clear();
    next_tag_ = 0;
  }

  // Appends one settle call per shard with outcomes waiting; returns those shards.
  std::vector<int> append_settles() {
    std::vector<int> shards;
    scripts::SettleCall call(keys_, config_.record_retention_ms);
    for (auto& [shard, list] : settles_) {
      call.add(shard, list);
      shards.push_back(shard);
    }
    if (!shards.empty()) call.append_to(redis_);
    return shards;
  }

  // The first reply is that of append_settles() when it had any: drop what was
  // written. A release refused because a worker runs the task already is how a
  // publish whose confirm was lost with the connection shows up: the broker had
  // it, and its run owns it now.
  void on_settled(const std::vector<int>& shards, const std::vector<Result<RedisReply>>& replies) {
    if (shards.empty()) return;
    if (!replies.front()) {
      spdlog::error("settling shards' confirms: {}", replies.front().error().message);
      return;
    }
    uint64_t refused = 0;
    for (size_t i = 0; i < shards.size(); ++i) {
      auto r = scripts::SettleCall::read(replies.front()->at(i));
      if (r) {
        for (const auto& one : *r) refused += one.result == scripts::SettleResult::refused ? 1 : 0;
      }
      settles_.erase(shards[i]);
    }
    if (refused > 0) {
      spdlog::debug("dispatcher {}: {} settled publishes found their task moved on (running or ended)", owner_,
                    refused);
    }
  }

  void flush_settles() {
    const auto shards = append_settles();
    if (shards.empty()) return;
    auto replies = redis_.flush();
    if (!replies) {
      redis_log_.fail("redis: settling confirms failed: " + replies.error().message);
      return;
    }
    on_settled(shards, *replies);
  }

  // ---- connections ------------------------------------------------------------------

  bool ensure_amqp() {
    if (amqp_.connected()) return true;
    if (auto st = amqp_.ensure_connected(); !st) {
      amqp_log_.fail(st.error().message);
      return false;
    }
    Status st = amqp_.confirm_select();
    if (st) st = declare_exchanges(amqp_, keys_);
    for (const auto& q : config_.dispatcher.queues) {
      if (!st) break;
      st = declare_queue(amqp_, keys_, q);
      if (st) declared_.insert(q);
    }
    if (!st) {
      amqp_log_.fail(st.error().message);
      amqp_.close();
      return false;
    }
    amqp_log_.ok("amqp");
    next_tag_ = 0;
    return true;
  }

  void ensure_subscribed() {
    if (sub_.connected()) return;
    auto r = sub_.command({"SUBSCRIBE", keys_.wake_channel()});
    if (!r) return;  // the claim path logs Redis trouble; we fall back to polling
    // Anything may have been enqueued while we were not listening.
    std::fill(next_due_.begin(), next_due_.end(), Clock::time_point::min());
  }

  // How long to sleep: until the earliest known due time, bounded by max_poll and
  // the next lease maintenance.
  std::chrono::microseconds sleep_budget() const {
    auto until = std::min(next_maintenance_, clock_.now() + std::chrono::milliseconds(config_.dispatcher.max_poll_ms));
    for (const auto& [s, lease] : owned_)
      until = std::min(until, std::max(next_due_[static_cast<size_t>(s)], next_round_));
    if (!settles_.empty()) until = std::min(until, next_round_);
    auto d = std::chrono::ceil<std::chrono::microseconds>(until - clock_.now());
    // Outstanding confirms are read as they come, so the wait can stay long.
    return std::max(d, std::chrono::microseconds(0));
  }

  // Sleeps up to `timeout`, waking for broker frames, wake-ups or stop.
  void wait(std::chrono::microseconds timeout) {
    if (amqp_.connected() && (amqp_frames_enqueued(amqp_.raw()) || amqp_data_in_buffer(amqp_.raw()))) {
      pump_amqp(std::chrono::milliseconds(0));
      return;
    }
    pollfd fds[3] = {{stop_fd_, POLLIN, 0}, {sub_.fd(), POLLIN, 0}, {-1, POLLIN, 0}};
    if (amqp_.connected()) fds[2].fd = amqp_get_sockfd(amqp_.raw());
    // ppoll, not poll: a tick is shorter than poll's millisecond.
    const timespec ts{static_cast<time_t>(timeout.count() / 1'000'000),
                      static_cast<long>((timeout.count() % 1'000'000) * 1000)};
    if (ppoll(fds, 3, &ts, nullptr) <= 0) return;
    if ((fds[2].revents & (POLLIN | POLLHUP | POLLERR)) != 0) pump_amqp(std::chrono::milliseconds(0));
    if ((fds[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0) read_wakeups();
  }

  void read_wakeups() {
    auto first = sub_.read_reply();
    if (!first) return;
    auto handle = [&](const RedisReply& msg) {
      // ["message", channel, shard]
      if (msg.size() == 3 && msg.at(0).sv() == "message") {
        const auto s = static_cast<size_t>(msg.at(2).integer());
        if (s < next_due_.size()) next_due_[s] = Clock::time_point::min();
      }
    };
    handle(*first);
    while (true) {
      auto more = sub_.buffered_reply();
      if (!more || !*more) break;
      handle(**more);
    }
  }

  // ---- shutdown and reporting ------------------------------------------------------

  void shutdown() {
    spdlog::info("dispatcher {} stopping: waiting for {} outstanding confirms", owner_, pending_.size());
    const auto deadline = clock_.now() + std::chrono::seconds(5);
    while (!pending_.empty() && amqp_.connected() && clock_.now() < deadline) pump_amqp(std::chrono::milliseconds(100));
    release_pending();
    for (int i = 0; i < 3 && !settles_.empty(); ++i) flush_settles();
    release_shards();
    if (ingress_thread_.joinable()) {
      ingress_->stop();
      ingress_thread_.join();
    }
    scheduler_.stop();
    if (scheduler_thread_.joinable()) scheduler_thread_.join();
    report();
    spdlog::info("dispatcher {} stopped", owner_);
  }

  void report() {
    if (ingress_) {
      const IngressStats in = ingress_->stats();
      if (in.received > 0) {
        spdlog::info("ingress: received={} enqueued={} duplicates={} refused={} replies={}", in.received, in.enqueued,
                     in.duplicates, in.refused, in.replies);
      }
    }
    if (const SchedulerStats sc = scheduler_.stats(); sc.enqueued + sc.duplicates + sc.overlapped + sc.missed > 0) {
      spdlog::info("schedules: enqueued={} duplicates={} overlapped={} missed={}", sc.enqueued, sc.duplicates,
                   sc.overlapped, sc.missed);
    }
    std::lock_guard lock(stats_mu_);
    if (stats_.lateness.count() == 0 && stats_.released == 0 && stats_.lost == 0) return;
    spdlog::info(
        "dispatched: claimed={} messages={} confirmed={} returned={} released={} recovered={} lost={} shards={} "
        "lateness {}",
        stats_.claimed, stats_.messages, stats_.confirmed, stats_.returned, stats_.released, stats_.recovered,
        stats_.lost, owned_.size(), stats_.lateness.summary());
  }

  Config config_;
  Clock& clock_;
  std::string owner_;
  Keys keys_;
  Redis redis_;
  Redis sub_;
  Amqp amqp_;
  Amqp inspector_;                           // asks queues' backlogs for the sweep (never publishes)
  bool blocked_ = false;                     // the broker blocked this connection's publishes (resource alarm)
  std::map<std::string, Backlog> backlogs_;  // by task queue
  struct Consumers {
    uint32_t count = 1;
    Clock::time_point asked{};
  };
  static constexpr auto kConsumersFresh = std::chrono::seconds(1);
  std::map<std::string, Consumers> consumers_;  // by task queue: how many to spread a burst over
  int stop_fd_;
  std::atomic<bool> stopping_{false};

  std::map<int, std::string> owned_;         // shard -> lease value "owner|token"
  std::vector<Clock::time_point> next_due_;  // per shard: when to claim next
  Clock::time_point next_maintenance_{};
  Clock::time_point next_paused_read_{};
  std::set<std::string> paused_;                         // paused queues, as last read
  Clock::time_point next_round_{};                       // no claim round before this (one per tick)
  std::map<std::string, std::vector<Outgoing>> outbox_;  // by queue: claimed this round, to publish
  std::deque<Pending> pending_;                          // publishes awaiting confirms, by tag
  int pending_tasks_ = 0;                                // tasks in pending_
  uint64_t next_tag_ = 0;
  std::map<int, std::vector<scripts::SettleRequest>> settles_;  // outcomes not yet written to Redis
  std::set<std::string> declared_;
  const std::set<std::string> configured_ = [this] {
    const auto queues = configured_queues(config_);
    return std::set<std::string>(queues.begin(), queues.end());
  }();  // what auto_declare "configured" may declare

  mutable std::mutex stats_mu_;
  DispatcherStats stats_;
  FailureLog redis_log_{clock_}, amqp_log_{clock_};

  std::unique_ptr<Ingress> ingress_;  // null without dispatcher.ingress
  std::thread ingress_thread_;
  Scheduler scheduler_;  // runs the schedules while this dispatcher leads them
  std::thread scheduler_thread_;
};

Dispatcher::Dispatcher(const Config& config, std::string owner, Clock& clock)
    : impl_(std::make_unique<Impl>(config, std::move(owner), clock)) {}
Dispatcher::~Dispatcher() = default;
void Dispatcher::run() { impl_->run(); }
void Dispatcher::stop() { impl_->stop(); }
DispatcherStats Dispatcher::stats() const { return impl_->stats(); }
const std::string& Dispatcher::owner() const { return impl_->owner(); }

}  // namespace ripen
