// ripen's error policy: expected failures (bad input, a server that is down, a
// duplicate) are values of Result<T>; exceptions are for start-up and config,
// where the process stops with one clear line; broken invariants abort.
#pragma once

#include <cassert>
#include <cstdlib>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace ripen {

enum class Errc {
  invalid,      // the caller's input is wrong; retrying will not help
  forbidden,    // the caller may not do this (a policy refuses it); retrying will not help
  not_found,    // the thing asked for does not exist
  conflict,     // the request clashes with the current state (e.g. already dispatched)
  unavailable,  // a server is unreachable or the connection broke; retry later
  server,       // the server answered with an error
  timeout,      // no answer within the deadline
  internal,     // a bug or an unexpected reply
};

const char* to_string(Errc code) noexcept;

struct Error {
  Errc code = Errc::internal;
  std::string message;

  std::string describe() const { return std::string(to_string(code)) + ": " + message; }
};

inline Error make_error(Errc code, std::string message) { return Error{code, std::move(message)}; }

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT: implicit by design
  Result(Error error) : v_(std::move(error)) {}  // NOLINT

  bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }

  T& value() & {
    check_ok();
    return std::get<0>(v_);
  }
  const T& value() const& {
    check_ok();
    return std::get<0>(v_);
  }
  T&& value() && {
    check_ok();
    return std::get<0>(std::move(v_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const Error& error() const {
    if (ok()) std::abort();  // asking a success for its error is a bug
    return std::get<1>(v_);
  }

 private:
  void check_ok() const {
    if (!ok()) std::abort();  // reading the value of a failure is a bug
  }
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)) {}  // NOLINT

  bool ok() const noexcept { return !error_.has_value(); }
  explicit operator bool() const noexcept { return ok(); }
  const Error& error() const {
    if (ok()) std::abort();
    return *error_;
  }

 private:
  std::optional<Error> error_;
};

using Status = Result<void>;

}  // namespace ripen
