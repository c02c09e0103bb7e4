// Recurring tasks: the schedules file and the spec of one schedule. Each spec
// says when (a cron expression in a time zone), what task to enqueue at each
// tick, and what to do with ticks that overlap a running one or were missed
// while nothing was running. A valid spec can never produce a task the
// producer would refuse: its task fields pass the envelope's own rules.
//
//   [[schedule]]
//   name = "nightly-report"      # required, 1-128 of [A-Za-z0-9._:-], unique in the file
//   cron = "0 2 * * *"           # required, see ripen/cron.h
//   timezone = "Europe/Berlin"   # default "UTC"
//   queue = "reports"            # required, as the envelope's queue
//   type = "report.build"        # required, as the envelope's type
//   payload = { kind = "daily" } # optional, any TOML value, sent as JSON
//   overlap = "allow"            # allow | skip
//   misfire = "run_once"         # skip | run_once | run_all
//   misfire_limit = 100          # 1-10000
//   max_attempts = 3             # optional, 1-1000
//   timeout = "30s"              # optional, a duration or integer ms, up to 7 days
//   downstream = "sms-gateway"   # optional
//   priority = 0                 # optional, 0-9
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "ripen/envelope.h"
#include "ripen/result.h"

namespace ripen {

// Room left in the envelope size limit for what the dispatcher adds to a
// schedule's task (id, idempotency key, due and created times).
inline constexpr size_t kScheduleEnvelopeHeadroom = 1024;

struct ScheduleSpec {
  std::string name;                  // 1-128 of [A-Za-z0-9._:-]; the schedule's identity
  std::string cron;                  // parses with CronExpr::parse and fires on some day
  std::string timezone = "UTC";      // an IANA zone the tz database knows
  std::string queue;                 // the envelope's queue rule
  std::string type;                  // the envelope's type rule
  nlohmann::json payload;            // null when absent; TOML dates and times become RFC 3339 strings
  std::string overlap = "allow";     // allow: every tick runs; skip: a tick is skipped while this
                                     // schedule's previous run has not ended
  std::string misfire = "run_once";  // ticks missed during downtime: skip = none, run_once = one run
                                     // for all of them, run_all = one run each
  int misfire_limit = 100;           // run_all runs at most this many missed ticks, the latest; 1-10000
  int max_attempts = 0;              // 0 = the configured default, else 1-1000
  int priority = 0;                  // 0-9
  int64_t timeout_ms = 0;            // 0 = the handler's default, else up to 7 days
  std::string downstream;            // empty or 1-128 of [A-Za-z0-9._:-]
  int line = 0;                      // where its [[schedule]] starts in the file; 0 when not from a file

  // Canonical JSON: every field (defaults too; `timeout` as "timeout_ms"),
  // keys sorted, so the same spec always dumps to the same text. `line` is
  // left out: moving a schedule in its file does not change it.
  nlohmann::json to_json() const;
  // The task each tick enqueues: the task fields above, not yet due.
  Envelope task() const;
  // The inverse, refusing unknown keys and wrong types, then validate()d.
  static Result<ScheduleSpec> from_json(const nlohmann::json& doc);

  // Errc::invalid naming the schedule and the field: "schedule 'x': cron: ...".
  // `max_envelope_bytes` is the producer's limit, kScheduleEnvelopeHeadroom of
  // which is kept for the dispatcher's fields.
  Status validate(size_t max_envelope_bytes = kDefaultMaxEnvelopeBytes) const;
};

// The whole file, every schedule validated; the first problem is the error,
// Errc::invalid "FILE:LINE: schedule 'x': cron: ..." with the line of the key
// at fault (or of its [[schedule]] when a required key is missing). Refused:
// TOML syntax errors, top-level keys other than `schedule`, unknown keys in a
// schedule, a name used twice (naming both lines). No schedules is an empty list.
Result<std::vector<ScheduleSpec>> parse_schedules(std::string_view toml_text, std::string_view source_name);

// The same from a file: Errc::not_found when it does not exist, Errc::invalid
// when it cannot be read.
Result<std::vector<ScheduleSpec>> load_schedules_file(const std::string& path);

}  // namespace ripen
