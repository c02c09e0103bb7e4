#include "ripen/ack_ledger.h"

#include <algorithm>
#include <cassert>
#include <climits>

namespace ripen {

void AckLedger::reset() {
  open_.clear();
  unacked_.clear();
  to_ack_.clear();
}

void AckLedger::open(uint64_t tag, size_t tasks) {
  assert(tasks > 0);
  open_[tag] = {tasks, false};
  unacked_.insert(tag);
}

AckLedger::Verdict AckLedger::done(uint64_t tag, bool give_back) {
  auto it = open_.find(tag);
  if (it == open_.end()) return Verdict::unknown;
  it->second.give_back = it->second.give_back || give_back;
  if (--it->second.tasks > 0) return Verdict::wait;
  const bool back = it->second.give_back;
  open_.erase(it);
  if (back) {
    unacked_.erase(tag);
    return Verdict::requeue;
  }
  to_ack_.push_back(tag);
  return Verdict::ack;
}

AckLedger::Acks AckLedger::take_acks() {
  Acks out;
  if (to_ack_.empty()) return out;
  for (uint64_t tag : to_ack_) unacked_.erase(tag);
  // Every tag below the lowest one still unacked is settled, so one multiple
  // ack up to the highest queued tag below it is exact; a multiple ack past an
  // unacked tag would ack a delivery whose tasks are not done.
  const uint64_t low = unacked_.empty() ? UINT64_MAX : *unacked_.begin();
  for (uint64_t tag : to_ack_) {
    if (tag < low) {
      out.multiple = std::max(out.multiple, tag);
    } else {
      out.singles.push_back(tag);
    }
  }
  std::sort(out.singles.begin(), out.singles.end());
  to_ack_.clear();
  return out;
}

}  // namespace ripen
