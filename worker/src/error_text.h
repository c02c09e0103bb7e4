// Cutting handler error texts to a size the worker can store and send: a task's
// last_error and its dead letter's x-ripen-* headers, which must fit one AMQP
// frame with room to spare (a header past the frame fails the publish and
// drops the connection, and the delivery comes back to fail again).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace ripen {

// Bytes of a handler's error text kept (before the "..." that marks a cut).
inline constexpr size_t kMaxErrorText = 1024;
// Bytes of a handler's error code kept.
inline constexpr size_t kMaxErrorCode = 128;

// The first `max` bytes of `text`, not cut inside a UTF-8 sequence, with "..."
// appended when anything was cut.
inline std::string cut_text(std::string_view text, size_t max = kMaxErrorText) {
  if (text.size() <= max) return std::string(text);
  size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(text[n]) & 0xC0) == 0x80) --n;
  return std::string(text.substr(0, n)) + "...";
}

// The last `max` bytes of `text` (where a command's stderr says what went
// wrong), not starting inside a UTF-8 sequence, with "..." before when cut.
inline std::string cut_text_tail(std::string_view text, size_t max) {
  if (text.size() <= max) return std::string(text);
  size_t from = text.size() - max;
  while (from < text.size() && (static_cast<unsigned char>(text[from]) & 0xC0) == 0x80) ++from;
  return "..." + std::string(text.substr(from));
}

}  // namespace ripen
