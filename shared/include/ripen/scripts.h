// The Lua scripts that make each timer-wheel step atomic. Each touches the keys of
// one shard only (one hash slot) and reads the time from Redis TIME, the single
// clock of the fleet. Arguments and replies are documented beside each script in
// scripts.cc.
#pragma once

#include "ripen/redis.h"

namespace ripen::scripts {

const LuaScript& enqueue();        // store a task and put it in the wheel
const LuaScript& claim();          // move ripe tasks to in-flight under a lease (fenced)
const LuaScript& settle();         // after publish: confirmed, returned (dead), or released
const LuaScript& shard_lease();    // take or renew a shard's lease
const LuaScript& shard_release();  // give a shard back
const LuaScript& heartbeat();      // register a live dispatcher, list the live ones
const LuaScript& start();          // worker: a delivery begins running
const LuaScript& finish();         // worker: succeeded, retry later, or dead

}  // namespace ripen::scripts
