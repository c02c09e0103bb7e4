// Strong typedefs for strings that are easy to mix up (a task id is not a queue
// name). Construction is explicit; comparison and hashing behave like the value.
#pragma once

#include <compare>
#include <functional>
#include <string>
#include <string_view>
#include <utility>

namespace ripen {

template <class Tag, class T = std::string>
class Strong {
 public:
  Strong() = default;
  explicit Strong(T value) : value_(std::move(value)) {}

  const T& get() const noexcept { return value_; }
  T& get() noexcept { return value_; }

  friend auto operator<=>(const Strong&, const Strong&) = default;
  friend bool operator==(const Strong&, const Strong&) = default;

 private:
  T value_{};
};

using TaskId = Strong<struct TaskIdTag>;
using QueueName = Strong<struct QueueNameTag>;
using IdempotencyKey = Strong<struct IdempotencyKeyTag>;

}  // namespace ripen

template <class Tag, class T>
struct std::hash<ripen::Strong<Tag, T>> {
  size_t operator()(const ripen::Strong<Tag, T>& s) const noexcept { return std::hash<T>{}(s.get()); }
};
