// The Lua files under shared/lua/, embedded at build time (cmake/EmbedLua.cmake).
#pragma once

#include <string_view>
#include <vector>

namespace ripen::scripts {

struct LuaSource {
  std::string_view name;  // its path under shared/lua/ without ".lua": "claim", "includes/prelude"
  std::string_view text;
};
const std::vector<LuaSource>& lua_sources();

}  // namespace ripen::scripts
