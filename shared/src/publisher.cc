#include "ripen/publisher.h"

#include <amqp_framing.h>

#include <spdlog/spdlog.h>

namespace ripen {

ConfirmedPublisher::ConfirmedPublisher(AmqpUrl url, Clock& clock, std::chrono::milliseconds confirm_timeout)
    : clock_(clock), confirm_timeout_(confirm_timeout), amqp_(std::move(url), std::chrono::seconds(5), clock) {}

Status ConfirmedPublisher::ensure_connected() {
  if (amqp_.connected()) return {};
  fail_outstanding();
  blocked_ = false;
  if (auto st = amqp_.ensure_connected(); !st) return st;
  if (auto st = amqp_.confirm_select(); !st) return st;
  next_tag_ = 0;
  return {};
}

Result<uint64_t> ConfirmedPublisher::publish(const std::string& exchange, const std::string& routing_key,
                                             std::string_view body, const AmqpMessageProps& props) {
  if (auto st = ensure_connected(); !st) return st.error();
  poll();  // a blocked notice may be waiting
  if (blocked_) return make_error(Errc::unavailable, "the broker blocks publishing (resource alarm)");
  if (auto st = amqp_.publish(exchange, routing_key, body, props, /*mandatory=*/false); !st) {
    fail_outstanding();
    return st.error();
  }
  const uint64_t ticket = ++next_ticket_;
  outstanding_.push_back({++next_tag_, ticket, clock_.now()});
  return ticket;
}

void ConfirmedPublisher::poll() {
  if (!outstanding_.empty() && !blocked_ && clock_.now() - outstanding_.front().sent > confirm_timeout_) {
    spdlog::warn("no publisher confirm for {} ms; reconnecting, the unconfirmed publishes are sent again",
                 confirm_timeout_.count());
    amqp_.close();
    fail_outstanding();
    return;
  }
  while (amqp_.connected()) {
    amqp_frame_t frame;
    timeval zero{0, 0};
    const int st = amqp_simple_wait_frame_noblock(amqp_.raw(), &frame, &zero);
    if (st == AMQP_STATUS_TIMEOUT) return;
    if (st != AMQP_STATUS_OK) {
      spdlog::warn("{}", amqp_.fail(st, "reading publisher confirms").message);
      fail_outstanding();
      return;
    }
    if (frame.frame_type != AMQP_FRAME_METHOD) continue;
    if (auto b = Amqp::blocked_by(frame)) {
      if (b->blocked != blocked_) {
        if (b->blocked) {
          spdlog::warn("the broker blocked publishing ({}); dead letters wait until it unblocks", b->reason);
        } else {
          spdlog::info("the broker unblocked publishing");
        }
      }
      blocked_ = b->blocked;
      continue;
    }
    switch (frame.payload.method.id) {
      case AMQP_BASIC_ACK_METHOD: {
        const auto* m = static_cast<amqp_basic_ack_t*>(frame.payload.method.decoded);
        settle(m->delivery_tag, m->multiple != 0, true);
        break;
      }
      case AMQP_BASIC_NACK_METHOD: {
        const auto* m = static_cast<amqp_basic_nack_t*>(frame.payload.method.decoded);
        settle(m->delivery_tag, m->multiple != 0, false);
        break;
      }
      default:
        if (auto closed = amqp_.closed_by(frame, "publishing")) {
          spdlog::warn("{}", closed->message);
          fail_outstanding();
          return;
        }
        break;
    }
  }
}

void ConfirmedPublisher::settle(uint64_t tag, bool multiple, bool confirmed) {
  std::erase_if(outstanding_, [&](const Outstanding& o) {
    if (o.tag == tag || (multiple && o.tag < tag)) {
      settled_.push_back({o.ticket, confirmed});
      return true;
    }
    return false;
  });
}

void ConfirmedPublisher::fail_outstanding() {
  for (const Outstanding& o : outstanding_) settled_.push_back({o.ticket, false});
  outstanding_.clear();
}

std::vector<ConfirmedPublisher::Settled> ConfirmedPublisher::take_settled() {
  std::vector<Settled> out;
  out.swap(settled_);
  return out;
}

int ConfirmedPublisher::fd() { return amqp_.connected() ? amqp_get_sockfd(amqp_.raw()) : -1; }

}  // namespace ripen
