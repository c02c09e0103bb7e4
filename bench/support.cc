#include "support.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include <amqp.h>  // before amqp_framing.h, which needs its types
#include <amqp_framing.h>

#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

namespace ripen::bench {

std::string proc_field(const std::string& file, const std::string& key) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) == 0) {
      auto colon = line.find(':');
      if (colon == std::string::npos) continue;
      auto value = line.substr(colon + 1);
      value.erase(0, value.find_first_not_of(" \t"));
      return value;
    }
  }
  return "";
}

Machine describe_machine() {
  Machine m;
  m.cpus = sysconf(_SC_NPROCESSORS_ONLN);
  const std::string mem = proc_field("/proc/meminfo", "MemTotal");
  if (!mem.empty()) {
    const double kb = std::strtod(mem.c_str(), nullptr);
    m.memory = fmt::format("{:.1f} GiB", kb / (1024.0 * 1024.0));
  }
  m.cpu_model = proc_field("/proc/cpuinfo", "model name");
  if (m.cpu_model.empty()) m.cpu_model = "unknown";
  utsname u{};
  if (uname(&u) == 0) {
    m.kernel = std::string(u.sysname) + " " + u.release;
    m.host = u.nodename;
  }
  return m;
}

void ServerOptions::add_to(CLI::App& app) {
  app.add_option("--rabbitmq-pid", rabbitmq_pid, "the broker's (beam) PID, to report its CPU time");
  app.add_option("--redis-url", redis_url, "default: $RIPEN_REDIS_URL or the config");
  app.add_option("--amqp-url", amqp_url, "default: $RIPEN_AMQP_URL or the config");
  app.add_option("--namespace", ns, "key and queue namespace (default: unique per run)");
}

ripen::Config ServerOptions::config(const std::string& prefix) {
  ripen::Config c = ripen::load_config(std::nullopt);
  if (!redis_url.empty()) c.redis_url = redis_url;
  if (!amqp_url.empty()) c.amqp_url = amqp_url;
  if (ns.empty()) ns = fmt::format("{}-{}", prefix, static_cast<long>(getpid()));
  c.ns = ns;
  return c;
}

std::string machine_line() {
  const Machine m = describe_machine();
  return fmt::format("machine cpus={} cpu=\"{}\" memory=\"{}\" kernel=\"{}\"", m.cpus, m.cpu_model, m.memory, m.kernel);
}

CpuMeter::Reading CpuMeter::read() const {
  Reading r;
  r.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.self_s = self_cpu_seconds() - self0;
  if (auto v = redis_cpu_seconds(redis); v && redis0) r.redis_s = *v - *redis0;
  if (auto v = proc_cpu_seconds(rabbit_pid); v && rabbit0) r.rabbit_s = *v - *rabbit0;
  return r;
}

std::string per_task_us(const std::optional<double>& seconds, int64_t tasks) {
  return seconds ? fmt::format("{:.2f}", *seconds * 1e6 / static_cast<double>(tasks)) : "n/a";
}

ripen::Result<int64_t> read_confirms(ripen::Amqp& amqp, uint64_t& confirmed_tag) {
  amqp_frame_t frame;
  if (amqp_simple_wait_frame(amqp.raw(), &frame) != AMQP_STATUS_OK) {
    return ripen::Error{ripen::Errc::unavailable, "publisher connection broke"};
  }
  if (frame.frame_type != AMQP_FRAME_METHOD) return int64_t{0};
  uint64_t tag = 0;
  bool multiple = false;
  if (frame.payload.method.id == AMQP_BASIC_ACK_METHOD) {
    auto* m = static_cast<amqp_basic_ack_t*>(frame.payload.method.decoded);
    tag = m->delivery_tag;
    multiple = m->multiple != 0;
  } else if (frame.payload.method.id == AMQP_BASIC_NACK_METHOD) {
    return ripen::Error{ripen::Errc::server, "the broker nacked a publish"};
  } else if (frame.payload.method.id == AMQP_BASIC_RETURN_METHOD) {
    return ripen::Error{ripen::Errc::server, "a publish was returned unroutable"};
  } else {
    return int64_t{0};
  }
  const uint64_t before = confirmed_tag;
  confirmed_tag = multiple ? std::max(confirmed_tag, tag) : confirmed_tag + 1;
  return static_cast<int64_t>(confirmed_tag - before);
}

std::optional<double> proc_cpu_seconds(long pid) {
  if (pid <= 0) return std::nullopt;
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!std::getline(in, stat)) return std::nullopt;
  // The command name may hold spaces and parentheses; fields resume after the last ')'.
  const auto close = stat.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream rest(stat.substr(close + 2));
  std::vector<std::string> fields;
  std::string f;
  while (rest >> f) fields.push_back(f);
  // fields[0] is field 3 (state), so utime (14) and stime (15) are [11] and [12].
  if (fields.size() < 13) return std::nullopt;
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  return (std::strtod(fields[11].c_str(), nullptr) + std::strtod(fields[12].c_str(), nullptr)) / ticks;
}

double rusage_seconds(const rusage& r) {
  return static_cast<double>(r.ru_utime.tv_sec + r.ru_stime.tv_sec) +
         static_cast<double>(r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

double self_cpu_seconds() {
  rusage r{};
  getrusage(RUSAGE_SELF, &r);
  return rusage_seconds(r);
}

std::optional<double> redis_cpu_seconds(ripen::Redis& redis) {
  auto r = redis.command({"INFO", "cpu"});
  if (!r || !r->is_string()) return std::nullopt;
  std::istringstream in(r->str());
  std::string line;
  double total = 0;
  int found = 0;
  while (std::getline(in, line)) {
    for (const char* key : {"used_cpu_user:", "used_cpu_sys:"}) {
      if (line.rfind(key, 0) == 0) {
        total += std::strtod(line.c_str() + std::strlen(key), nullptr);
        ++found;
      }
    }
  }
  return found == 2 ? std::optional(total) : std::nullopt;
}

ripen::Status delete_exchange(ripen::Amqp& amqp, const std::string& name) {
  if (auto st = amqp.ensure_connected(); !st) return st;
  amqp_exchange_delete(amqp.raw(), ripen::Amqp::kChannel, amqp_cstring_bytes(name.c_str()), 0);
  return amqp.check(amqp_get_rpc_reply(amqp.raw()), "deleting exchange '" + name + "'");
}

namespace {

std::string glob_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

}  // namespace

uint64_t delete_namespace_keys(ripen::Redis& redis, const std::string& ns) {
  uint64_t deleted = 0;
  std::string cursor = "0";
  const std::string pattern = glob_escape(ns) + ":*";
  do {
    auto r = redis.command({"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"});
    if (!r || r->size() != 2) {
      spdlog::error("cleanup: SCAN failed: {}", r ? "unexpected reply" : r.error().describe());
      return deleted;
    }
    cursor = r->at(0).str();
    auto keys = r->at(1);
    if (keys.size() > 0) {
      std::vector<std::string> args = {"UNLINK"};
      for (size_t i = 0; i < keys.size(); ++i) args.push_back(keys.at(i).str());
      auto d = redis.command(args);
      if (d && d->is_integer()) deleted += static_cast<uint64_t>(d->integer());
    }
  } while (cursor != "0");
  return deleted;
}

void delete_amqp_names(ripen::Amqp& amqp, const ripen::Keys& keys, const std::vector<std::string>& queues) {
  std::vector<std::string> names;
  for (const auto& q : queues) {
    names.push_back(keys.queue(q));
    names.push_back(keys.dead_queue(q));
  }
  names.push_back(keys.dead_queue(ripen::Keys::kUnroutable));
  names.push_back(keys.dead_queue(ripen::Keys::kIngress));
  names.push_back(keys.ingress_queue());
  for (const auto& n : names) {
    if (auto st = amqp.delete_queue(n); !st) spdlog::warn("cleanup: {}", st.error().message);
  }
  for (const auto& e : {keys.task_exchange(), keys.dead_exchange(), keys.ingress_exchange()}) {
    if (auto st = delete_exchange(amqp, e); !st) spdlog::warn("cleanup: {}", st.error().message);
  }
}

}  // namespace ripen::bench
