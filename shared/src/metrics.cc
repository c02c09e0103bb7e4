#include "ripen/metrics.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>

namespace ripen {

int64_t lateness_ms(int64_t now_ms, int64_t due_ms, int64_t created_ms) {
  return now_ms - std::max(due_ms, created_ms);
}

int Histogram::bucket_of(int64_t ms) {
  if (ms < kSubBuckets) return static_cast<int>(std::max<int64_t>(ms, 0));
  const auto v = static_cast<uint64_t>(ms);
  const int exp = 63 - std::countl_zero(v);  // floor(log2 v) >= 5
  const int shift = exp - 5;                 // keep the top 5 bits below the leading one
  const auto sub = static_cast<int>((v >> shift) & (kSubBuckets - 1));
  const int b = (exp - 4) * kSubBuckets + sub;
  return std::min(b, kBuckets - 1);
}

int64_t Histogram::upper_edge(int bucket) {
  if (bucket < kSubBuckets) return bucket;
  const int exp = bucket / kSubBuckets + 4;
  const int sub = bucket % kSubBuckets;
  const int shift = exp - 5;
  const int64_t low = (int64_t{1} << exp) | (static_cast<int64_t>(sub) << shift);
  return low + (int64_t{1} << shift) - 1;
}

void Histogram::record(int64_t ms) {
  if (ms < 0) ms = 0;
  ++buckets_[static_cast<size_t>(bucket_of(ms))];
  ++count_;
  max_ = std::max(max_, ms);
  min_ = std::min(min_, ms);
}

void Histogram::merge(const Histogram& other) {
  for (size_t i = 0; i < buckets_.size(); ++i) buckets_[i] += other.buckets_[i];
  count_ += other.count_;
  max_ = std::max(max_, other.max_);
  min_ = std::min(min_, other.min_);
}

int64_t Histogram::quantile(double q) const {
  if (count_ == 0) return 0;
  const auto rank = static_cast<uint64_t>(std::ceil(std::clamp(q, 0.0, 1.0) * static_cast<double>(count_)));
  uint64_t seen = 0;
  for (size_t i = 0; i < buckets_.size(); ++i) {
    seen += buckets_[i];
    if (seen >= std::max<uint64_t>(rank, 1)) return std::min(upper_edge(static_cast<int>(i)), max_);
  }
  return max_;
}

std::string Histogram::summary() const {
  char buf[160];
  std::snprintf(buf, sizeof buf, "n=%llu p50=%lldms p99=%lldms p99.9=%lldms max=%lldms",
                static_cast<unsigned long long>(count_), static_cast<long long>(quantile(0.5)),
                static_cast<long long>(quantile(0.99)), static_cast<long long>(quantile(0.999)),
                static_cast<long long>(max_));
  return buf;
}

}  // namespace ripen
