// ripen pause QUEUE, ripen resume QUEUE: hold a queue's tasks in the wheel, and let them go.
#include <memory>

#include <nlohmann/json.hpp>

#include "cli.h"
#include "ripen/producer.h"

namespace ripen::cli {
namespace {

struct QueueArgs {
  std::string queue;
  bool json = false;
};

int run_pause(const Common& common, const QueueArgs& a) {
  const Config config = common.load();
  Producer producer(config);
  if (auto st = producer.pause_queue(a.queue); !st) return fail(st.error());
  if (a.json) {
    std::cout << nlohmann::json{{"queue", a.queue}, {"paused", true}}.dump() << "\n";
  } else {
    std::cout << "queue '" << a.queue << "' paused: its tasks stay in the wheel as they ripen (already published "
              << "ones still run); ripen resume " << a.queue << " lets them go\n";
  }
  std::cout.flush();
  warn_if_unconsumed(config, {a.queue}, true);
  return 0;
}

int run_resume(const Common& common, const QueueArgs& a) {
  Producer producer(common.load());
  auto moved = producer.resume_queue(a.queue);
  if (!moved) return fail(moved.error());
  if (a.json) {
    std::cout << nlohmann::json{{"queue", a.queue}, {"paused", false}, {"released", *moved}}.dump() << "\n";
  } else {
    std::cout << "queue '" << a.queue << "' resumed: " << *moved << " held tasks back in the wheel\n";
  }
  return 0;
}

}  // namespace

void add_queue_commands(CLI::App& app, const Common& common, Actions& actions) {
  auto args = std::make_shared<QueueArgs>();
  auto* pause = app.add_subcommand(
      "pause", "hold a queue's tasks in the timer wheel as they ripen, instead of publishing them, until resume");
  pause->add_option("queue", args->queue, "task queue")->required();
  pause->add_flag("--json", args->json, "print {queue, paused} as JSON");
  actions.emplace_back(pause, [&common, args] { return run_pause(common, *args); });

  auto* resume = app.add_subcommand("resume", "publish a paused queue's tasks again; the held ones go back, due");
  resume->add_option("queue", args->queue, "task queue")->required();
  resume->add_flag("--json", args->json, "print {queue, paused, released} as JSON");
  actions.emplace_back(resume, [&common, args] { return run_resume(common, *args); });
}

}  // namespace ripen::cli
