#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

#include "ripen/worker.h"

extern char** environ;

namespace ripen {
namespace {

constexpr size_t kStderrTail = 2048;    // bytes of stderr kept for the error message
constexpr size_t kStdoutLogged = 4096;  // bytes of stdout logged at debug level

void keep_tail(std::string& buf, const char* data, size_t n, size_t limit) {
  buf.append(data, n);
  if (buf.size() > 2 * limit) buf.erase(0, buf.size() - limit);
}

std::string tail(const std::string& buf, size_t limit) {
  std::string t = buf.size() > limit ? buf.substr(buf.size() - limit) : buf;
  while (!t.empty() && (t.back() == '\n' || t.back() == '\r')) t.pop_back();
  return t;
}

struct Pipes {
  int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
  ~Pipes() {
    for (int fd : {in[0], in[1], out[0], out[1], err[0], err[1]}) {
      if (fd >= 0) close(fd);
    }
  }
};

void close_fd(int& fd) {
  if (fd >= 0) close(fd);
  fd = -1;
}

}  // namespace

Handler make_log_handler() {
  return [](const TaskContext& ctx) {
    spdlog::info("task {} type={} queue={} attempt={} payload={}", ctx.id, ctx.task.type, ctx.task.queue, ctx.attempt,
                 ctx.task.payload.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  };
}

Handler make_exec_handler(const std::string& command, int64_t default_timeout_ms) {
  return [command, default_timeout_ms](const TaskContext& ctx) {
    const int64_t timeout_ms = ctx.timeout_ms > 0 ? ctx.timeout_ms : default_timeout_ms;
    const std::string input = ctx.task.payload.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);

    // Everything the child needs is built before fork: after fork in a threaded
    // process only async-signal-safe calls are allowed.
    std::vector<std::string> env_strings;
    for (char** e = environ; *e != nullptr; ++e) {
      std::string_view kv(*e);
      if (kv.rfind("RIPEN_TASK_ID=", 0) == 0 || kv.rfind("RIPEN_IDEMPOTENCY_KEY=", 0) == 0 ||
          kv.rfind("RIPEN_ATTEMPT=", 0) == 0 || kv.rfind("RIPEN_TASK_TYPE=", 0) == 0 ||
          kv.rfind("RIPEN_QUEUE=", 0) == 0) {
        continue;
      }
      env_strings.emplace_back(kv);
    }
    env_strings.push_back("RIPEN_TASK_ID=" + ctx.id);
    env_strings.push_back("RIPEN_IDEMPOTENCY_KEY=" + ctx.idempotency_key);
    env_strings.push_back("RIPEN_ATTEMPT=" + std::to_string(ctx.attempt));
    env_strings.push_back("RIPEN_TASK_TYPE=" + ctx.task.type);
    env_strings.push_back("RIPEN_QUEUE=" + ctx.task.queue);
    std::vector<char*> envp;
    for (auto& s : env_strings) envp.push_back(s.data());
    envp.push_back(nullptr);
    std::string sh = "/bin/sh", dash_c = "-c", cmd = command;
    char* argv[] = {sh.data(), dash_c.data(), cmd.data(), nullptr};

    Pipes p;
    if (pipe2(p.in, O_CLOEXEC) != 0 || pipe2(p.out, O_CLOEXEC) != 0 || pipe2(p.err, O_CLOEXEC) != 0) {
      throw std::runtime_error(std::string("exec: cannot create pipes: ") + std::strerror(errno));
    }
    const pid_t pid = fork();
    if (pid < 0) throw std::runtime_error(std::string("exec: fork failed: ") + std::strerror(errno));
    if (pid == 0) {
      // Its own process group, so a timeout kills the command and its children.
      setpgid(0, 0);
      dup2(p.in[0], 0);
      dup2(p.out[1], 1);
      dup2(p.err[1], 2);
      signal(SIGPIPE, SIG_DFL);
      execve(argv[0], argv, envp.data());
      _exit(127);
    }
    setpgid(pid, pid);  // also from the parent, so the group exists before any kill
    close_fd(p.in[0]);
    close_fd(p.out[1]);
    close_fd(p.err[1]);
    fcntl(p.in[1], F_SETFL, O_NONBLOCK);

    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    size_t written = 0;
    std::string out, err;
    bool timed_out = false;
    auto cancelled = [&] { return ctx.cancelled != nullptr && ctx.cancelled->load(); };
    if (input.empty()) close_fd(p.in[1]);
    // Feed stdin and drain stdout/stderr together: a command that writes a lot
    // before reading its input would otherwise deadlock against us.
    while (p.out[0] >= 0 || p.err[0] >= 0) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0 || cancelled()) {
        timed_out = true;
        break;
      }
      pollfd fds[3] = {{p.out[0], POLLIN, 0}, {p.err[0], POLLIN, 0}, {p.in[1], POLLOUT, 0}};
      const int wait_ms = static_cast<int>(std::min<int64_t>(left.count(), 200));
      if (poll(fds, 3, wait_ms) < 0 && errno != EINTR) break;
      char buf[4096];
      for (int k = 0; k < 2; ++k) {
        int& fd = k == 0 ? p.out[0] : p.err[0];
        if (fd < 0 || (fds[k].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
        const ssize_t n = read(fd, buf, sizeof buf);
        if (n > 0) {
          keep_tail(k == 0 ? out : err, buf, static_cast<size_t>(n), k == 0 ? kStdoutLogged : kStderrTail);
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
          close_fd(fd);
        }
      }
      if (p.in[1] >= 0 && (fds[2].revents & (POLLOUT | POLLERR | POLLHUP)) != 0) {
        const ssize_t n = write(p.in[1], input.data() + written, input.size() - written);
        if (n > 0) written += static_cast<size_t>(n);
        if (n < 0 && errno != EAGAIN && errno != EINTR) close_fd(p.in[1]);  // the command closed stdin: fine
        if (written == input.size()) close_fd(p.in[1]);
      }
    }
    close_fd(p.in[1]);
    int status = 0;
    if (timed_out) {
      kill(-pid, SIGKILL);
      waitpid(pid, &status, 0);
      std::string msg = cancelled()
                            ? "exec: the worker shut down; killed the process group"
                            : "exec: timed out after " + std::to_string(timeout_ms) + " ms; killed the process group";
      if (!err.empty()) msg += "; stderr: " + tail(err, kStderrTail);
      throw Failure(msg, cancelled() ? "" : "timeout");
    }
    // Both output pipes are closed, so the command is exiting; reap it, still
    // bounded by the deadline.
    while (waitpid(pid, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() >= deadline || cancelled()) {
        kill(-pid, SIGKILL);
        waitpid(pid, &status, 0);
        throw Failure("exec: timed out after " + std::to_string(timeout_ms) + " ms; killed the process group",
                      "timeout");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (!out.empty()) spdlog::debug("task {} exec stdout: {}", ctx.id, tail(out, kStdoutLogged));
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return;
    std::string msg = WIFEXITED(status) ? "exec: command exited with status " + std::to_string(WEXITSTATUS(status))
                                        : "exec: command killed by signal " + std::to_string(WTERMSIG(status));
    if (!err.empty()) msg += "; stderr: " + tail(err, kStderrTail);
    // The code lets [types.<type>] permanent_errors name exit statuses ("exit_2").
    throw Failure(msg, WIFEXITED(status) ? "exit_" + std::to_string(WEXITSTATUS(status))
                                         : "signal_" + std::to_string(WTERMSIG(status)));
  };
}

}  // namespace ripen
