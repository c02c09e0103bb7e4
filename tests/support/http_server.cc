#include "http_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <utility>

namespace ripen::testing {
namespace {

using SteadyClock = std::chrono::steady_clock;

// How long one connection may take to send its request or read the answer.
constexpr std::chrono::seconds kIoTimeout{5};
constexpr size_t kMaxRequest = 1 << 20;

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string trim_spaces(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return {};
  return s.substr(b, s.find_last_not_of(" \t\r") - b + 1);
}

}  // namespace

HttpServer::HttpServer() {
  listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (listen_fd_ < 0 || bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      listen(listen_fd_, 16) != 0 || getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0 ||
      pipe2(wake_, O_CLOEXEC) != 0) {
    const std::string err = std::strerror(errno);
    for (int fd : {listen_fd_, wake_[0], wake_[1]}) {
      if (fd >= 0) close(fd);
    }
    throw std::runtime_error("HttpServer: " + err);
  }
  port_ = ntohs(addr.sin_port);
  thread_ = std::thread([this] { serve(); });
}

HttpServer::~HttpServer() {
  stopping_.store(true);
  const char byte = 1;
  // The pipe stays readable from now on, so every wait of the server's thread ends at once.
  while (write(wake_[1], &byte, 1) < 0 && errno == EINTR) {
  }
  thread_.join();
  for (int fd : {listen_fd_, wake_[0], wake_[1]}) close(fd);
}

std::string HttpServer::url(const std::string& path) const {
  return "http://127.0.0.1:" + std::to_string(port_) + path;
}

void HttpServer::set_handler(Handler handler) {
  std::lock_guard lock(mu_);
  handler_ = std::move(handler);
}

std::optional<HttpServer::Request> HttpServer::last_request() const {
  std::lock_guard lock(mu_);
  return last_;
}

bool HttpServer::wait_for(int fd, short events, SteadyClock::time_point deadline) {
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now()).count();
    if (left <= 0) return false;
    pollfd fds[2] = {{fd, events, 0}, {wake_[0], POLLIN, 0}};
    const int n = poll(fds, 2, static_cast<int>(std::min<int64_t>(left, 1000)));
    if (n < 0 && errno != EINTR) return false;
    if (fds[1].revents != 0) return false;  // stopping
    if (n > 0 && fds[0].revents != 0) return true;
  }
}

void HttpServer::serve() {
  while (!stopping_.load()) {
    if (!wait_for(listen_fd_, POLLIN, SteadyClock::now() + std::chrono::seconds(1))) continue;
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) continue;  // EAGAIN: the client gave up between poll and accept
    serve_one(fd);
    close(fd);
  }
}

void HttpServer::serve_one(int fd) {
  const auto deadline = SteadyClock::now() + kIoTimeout;
  std::string in;
  char buf[4096];
  size_t head_end = std::string::npos, want = 0;
  Request req;
  while (head_end == std::string::npos || in.size() < head_end + 4 + want) {
    if (in.size() > kMaxRequest || !wait_for(fd, POLLIN, deadline)) return;
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return;
    if (n > 0) in.append(buf, static_cast<size_t>(n));
    if (head_end != std::string::npos || (head_end = in.find("\r\n\r\n")) == std::string::npos) continue;
    std::istringstream head(in.substr(0, head_end));
    std::string line, version;
    std::getline(head, line);
    std::istringstream(line) >> req.method >> req.path >> version;
    while (std::getline(head, line)) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) req.headers[lower(line.substr(0, colon))] = trim_spaces(line.substr(colon + 1));
    }
    if (auto cl = req.headers.find("content-length"); cl != req.headers.end())
      want = std::strtoull(cl->second.c_str(), nullptr, 10);
  }
  req.body = in.substr(head_end + 4, want);

  Handler handler;
  {
    std::lock_guard lock(mu_);
    last_ = req;
    handler = handler_;
  }
  requests_.fetch_add(1);
  const Response resp = handler ? handler(req) : Response{};

  if (resp.delay.count() > 0) {
    // Readable during the delay means the client closed (it has sent all it will): stop waiting then.
    if (wait_for(fd, POLLIN, SteadyClock::now() + resp.delay) || stopping_.load()) return;
  }
  std::string out = "HTTP/1.1 " + std::to_string(resp.status) + " Scripted" +
                    "\r\nContent-Length: " + std::to_string(resp.body.size()) + "\r\nConnection: close\r\n";
  for (const auto& [name, value] : resp.headers) out.append(name).append(": ").append(value).append("\r\n");
  out += "\r\n";
  if (req.method != "HEAD") out += resp.body;
  size_t sent = 0;
  while (sent < out.size() && wait_for(fd, POLLOUT, deadline + resp.delay)) {
    const ssize_t n = send(fd, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EINTR) return;
    if (n > 0) sent += static_cast<size_t>(n);
  }
  shutdown(fd, SHUT_WR);
}

}  // namespace ripen::testing
