// A loopback HTTP/1.1 server for tests of code that makes HTTP requests. It listens
// on 127.0.0.1 on an ephemeral port and serves one connection at a time on its own
// thread: it reads one request (Content-Length bodies only), answers what the test's
// handler returns, and closes the connection. Every socket wait has a timeout, and
// the destructor stops the thread promptly, even in the middle of a delayed answer.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace ripen::testing {

class HttpServer {
 public:
  struct Request {
    std::string method;
    std::string path;                            // the request target, with its query string
    std::map<std::string, std::string> headers;  // names lowercased
    std::string body;
  };
  struct Response {
    int status = 200;
    std::string body;
    std::chrono::milliseconds delay{0};  // waited before answering; cut short when the client goes away
    std::map<std::string, std::string> headers;
  };
  using Handler = std::function<Response(const Request&)>;

  HttpServer();  // answers 200 with an empty body until set_handler()
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  int port() const { return port_; }
  // "http://127.0.0.1:<port><path>"
  std::string url(const std::string& path = "/") const;
  // Called on the server's thread for each request.
  void set_handler(Handler handler);
  // Requests read in full so far.
  int64_t requests() const { return requests_.load(); }
  std::optional<Request> last_request() const;

 private:
  void serve();
  void serve_one(int fd);
  // Waits for `events` on fd until `deadline`; false on timeout, stop or error.
  bool wait_for(int fd, short events, std::chrono::steady_clock::time_point deadline);

  std::atomic<bool> stopping_{false};
  int listen_fd_ = -1;
  int wake_[2] = {-1, -1};  // written by the destructor to wake every wait
  int port_ = 0;
  std::atomic<int64_t> requests_{0};
  mutable std::mutex mu_;
  Handler handler_;
  std::optional<Request> last_;
  std::thread thread_;
};

}  // namespace ripen::testing
