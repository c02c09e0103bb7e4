// Schedules one task with ripen's C++ producer API, from a project that found
// ripen with find_package(ripen).
//
//   enqueue-example TYPE PAYLOAD_JSON DELAY [QUEUE]
//
// Redis is found as ripen's own programs find it: RIPEN_CONFIG, RIPEN_REDIS_URL,
// RIPEN_NAMESPACE. Prints the task id; exits 1 with the reason when refused.
#include <chrono>
#include <iostream>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include <ripen/config.h>
#include <ripen/duration.h>
#include <ripen/producer.h>

int main(int argc, char** argv) {
  if (argc < 4 || argc > 5) {
    std::cerr << "usage: enqueue-example TYPE PAYLOAD_JSON DELAY [QUEUE]\n";
    return 2;
  }
  try {
    const ripen::Config config = ripen::load_config(std::nullopt);
    ripen::Producer producer(config);

    ripen::Envelope task;
    task.type = argv[1];
    task.queue = argc == 5 ? argv[4] : "default";
    task.payload = nlohmann::json::parse(argv[2], nullptr, /*allow_exceptions=*/false);
    if (task.payload.is_discarded()) {
      std::cerr << "enqueue-example: PAYLOAD_JSON: not valid JSON\n";
      return 2;
    }
    auto delay = ripen::parse_duration_ms(argv[3]);
    if (!delay) {
      std::cerr << "enqueue-example: DELAY: " << delay.error().message << "\n";
      return 2;
    }

    auto enqueued = producer.enqueue_in(task, std::chrono::milliseconds(*delay));
    if (!enqueued) {
      std::cerr << "enqueue-example: " << enqueued.error().describe() << "\n";
      return 1;
    }
    std::cout << enqueued->id.get() << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "enqueue-example: " << e.what() << "\n";
    return 1;
  }
}
