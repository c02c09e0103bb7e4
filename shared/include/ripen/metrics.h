// A log-linear latency histogram: exact below 1 ms buckets' width, then about 3%
// relative error, up to an hour. Lock-free to record from one thread at a time;
// merge() combines per-thread copies.
#pragma once

#include <array>
#include <cstdint>
#include <string>

namespace ripen {

// How late a task is when it is claimed or starts at `now_ms`: counted from its
// due time, or from when it was created if that is later. A task given a due
// time already past (`--at` yesterday, an external clock behind) is due at once,
// and was not late for the time before it existed; counted from its due time it
// would put days into a histogram of milliseconds. All three by Redis TIME; the
// Lua scripts' tally counts the same way (prelude.lua, lateness()).
int64_t lateness_ms(int64_t now_ms, int64_t due_ms, int64_t created_ms);

class Histogram {
 public:
  // Records a value in milliseconds (negative values count as 0: early is not
  // "negative lateness" we want to hide, it is reported separately by callers).
  void record(int64_t ms);
  void merge(const Histogram& other);
  uint64_t count() const { return count_; }
  int64_t max() const { return max_; }
  int64_t min() const { return count_ == 0 ? 0 : min_; }
  // The value at quantile q in [0, 1], as the upper edge of its bucket (never
  // under-reports), clamped to the observed max.
  int64_t quantile(double q) const;
  // "n=... p50=...ms p99=...ms p99.9=...ms max=...ms"
  std::string summary() const;
  void reset() { *this = Histogram(); }

 private:
  static constexpr int kSubBuckets = 32;  // per power of two
  static constexpr int kBuckets = 40 * kSubBuckets;
  static int bucket_of(int64_t ms);
  static int64_t upper_edge(int bucket);

  std::array<uint64_t, kBuckets> buckets_{};
  uint64_t count_ = 0;
  int64_t max_ = 0;
  int64_t min_ = INT64_MAX;
};

}  // namespace ripen
