#include "ripen/untrusted.h"

#include <algorithm>

namespace ripen {

size_t json_too_deep_at(std::string_view text, int max_depth) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // the escaped character cannot end the string
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    switch (c) {
      case '"':
        in_string = true;
        break;
      case '[':
      case '{':
        if (++depth > max_depth) return i;
        break;
      case ']':
      case '}':
        // Below zero only in text that is not JSON, which the parser refuses.
        --depth;
        break;
      default:
        break;
    }
  }
  return std::string_view::npos;
}

Result<nlohmann::json> parse_json_bounded(std::string_view text, int max_depth) {
  // A scan first, rather than a limit inside the parse: it costs one pass over
  // bytes already in cache and builds nothing, so a hostile document costs no
  // allocation at all.
  if (const size_t at = json_too_deep_at(text, max_depth); at != std::string_view::npos) {
    return make_error(Errc::invalid, "nested deeper than " + std::to_string(max_depth) + " levels (level " +
                                         std::to_string(max_depth + 1) + " opens at byte " + std::to_string(at) + ")");
  }
  nlohmann::json doc = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return make_error(Errc::invalid, "not valid JSON");
  return doc;
}

std::string quote_short(std::string_view text, size_t max_bytes) {
  size_t n = std::min(text.size(), max_bytes);
  // Back up to the start of a UTF-8 sequence, so the cut leaves no half character.
  while (n < text.size() && n > 0 && (static_cast<unsigned char>(text[n]) & 0xC0) == 0x80) --n;
  std::string out;
  out.reserve(n + 32);
  out.push_back('\'');
  for (size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c == 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    } else if (c == '\'' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  if (n < text.size()) {
    out += "\xE2\x80\xA6' (" + std::to_string(text.size()) + " bytes)";  // U+2026 HORIZONTAL ELLIPSIS
  } else {
    out.push_back('\'');
  }
  return out;
}

}  // namespace ripen
