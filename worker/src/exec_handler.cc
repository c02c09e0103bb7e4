#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

#include "ripen/untrusted.h"
#include "ripen/worker.h"

extern char** environ;

namespace ripen {
namespace {

// Bytes of stderr kept for the error message: with the message's own words it
// stays under the worker's cut (ripen/untrusted.h), so the end of stderr survives.
constexpr size_t kStderrTail = kMaxErrorText - 160;
constexpr size_t kStdoutLogged = 4096;  // bytes of stdout logged at debug level

// The variables the handler sets itself: never taken from the worker's environment.
constexpr std::string_view kTaskVariables[] = {"RIPEN_TASK_ID", "RIPEN_IDEMPOTENCY_KEY", "RIPEN_ATTEMPT",
                                               "RIPEN_TASK_TYPE", "RIPEN_QUEUE"};

void keep_tail(std::string& buf, const char* data, size_t n, size_t limit) {
  buf.append(data, n);
  if (buf.size() > 2 * limit) buf.erase(0, buf.size() - limit);
}

std::string tail(const std::string& buf, size_t limit) {
  std::string t = cut_text_tail(buf, limit);
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

bool env_allowed(std::string_view name, const std::vector<std::string>& allow) {
  for (const auto& a : allow) {
    if (!a.empty() && a.back() == '*' ? name.substr(0, a.size() - 1) == std::string_view(a).substr(0, a.size() - 1)
                                      : name == a) {
      return true;
    }
  }
  return false;
}

// What the child does between fork and exec, decided before the fork: after
// fork in a threaded process only async-signal-safe calls are allowed.
struct ChildPlan {
  std::vector<std::pair<int, rlim_t>> limits;
  bool switch_ids = false;
  uid_t uid = 0;
  gid_t gid = 0;
};

ChildPlan plan_child(const ExecLimits& l) {
  ChildPlan plan;
  if (l.cpu_seconds > 0) plan.limits.emplace_back(RLIMIT_CPU, static_cast<rlim_t>(l.cpu_seconds));
  if (l.memory_mb > 0) plan.limits.emplace_back(RLIMIT_AS, static_cast<rlim_t>(l.memory_mb) * 1024 * 1024);
  if (l.open_files > 0) plan.limits.emplace_back(RLIMIT_NOFILE, static_cast<rlim_t>(l.open_files));
  if (l.processes > 0) plan.limits.emplace_back(RLIMIT_NPROC, static_cast<rlim_t>(l.processes));
  if (l.user.empty() && l.group.empty()) return plan;
  plan.switch_ids = true;
  plan.uid = geteuid();
  plan.gid = getegid();
  std::vector<char> buf(16384);
  if (!l.user.empty()) {
    passwd pw{};
    passwd* found = nullptr;
    if (getpwnam_r(l.user.c_str(), &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr) {
      throw ConfigError("user '" + l.user + "': no such user");
    }
    plan.uid = pw.pw_uid;
    plan.gid = pw.pw_gid;
  }
  if (!l.group.empty()) {
    group gr{};
    group* found = nullptr;
    if (getgrnam_r(l.group.c_str(), &gr, buf.data(), buf.size(), &found) != 0 || found == nullptr) {
      throw ConfigError("group '" + l.group + "': no such group");
    }
    plan.gid = gr.gr_gid;
  }
  if (geteuid() != 0 && (plan.uid != geteuid() || plan.gid != getegid())) {
    throw ConfigError("running commands as another user or group needs a worker started as root");
  }
  return plan;
}

// In the child: a failure message on stderr (the parent's pipe) and exit 126,
// as a shell reports a command it could not run.
[[noreturn]] void child_fail(const char* what) {
  const char prefix[] = "ripen exec: ";
  [[maybe_unused]] auto a = write(2, prefix, sizeof prefix - 1);
  [[maybe_unused]] auto b = write(2, what, strlen(what));
  [[maybe_unused]] auto c = write(2, "\n", 1);
  _exit(126);
}

// In the child: closes every descriptor above 2 — the worker's Redis and AMQP
// sockets among them (hiredis opens its socket without close-on-exec).
void close_inherited() {
  if (close_range(3, ~0U, 0) == 0) return;
  // A kernel before 5.9: walk /proc/self/fd with the raw getdents64, which
  // (unlike opendir) allocates nothing.
  const int dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) child_fail("cannot list /proc/self/fd to close inherited descriptors");
  alignas(8) char buf[4096];
  for (;;) {
    const long n = syscall(SYS_getdents64, dir, buf, sizeof buf);
    if (n <= 0) break;
    for (long at = 0; at < n;) {
      const auto* d = reinterpret_cast<const char*>(buf + at);
      const auto reclen = *reinterpret_cast<const unsigned short*>(d + 16);
      const char* name = d + 19;
      int fd = 0;
      bool number = *name != '\0';
      for (const char* c = name; *c != '\0'; ++c) {
        if (*c < '0' || *c > '9') number = false;
        fd = fd * 10 + (*c - '0');
      }
      if (number && fd > 2 && fd != dir) close(fd);
      at += reclen;
    }
  }
  close(dir);
}

// Retries on EINTR; -1 with errno for any other error.
pid_t wait_for(pid_t pid, int* status, int options) {
  for (;;) {
    const pid_t r = waitpid(pid, status, options);
    if (r >= 0 || errno != EINTR) return r;
  }
}

}  // namespace

Handler make_log_handler() {
  return [](const TaskContext& ctx) {
    spdlog::info("task {} type={} queue={} attempt={} payload={}", ctx.id, ctx.task.type, ctx.task.queue, ctx.attempt,
                 ctx.task.payload.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  };
}

Handler make_exec_handler(const std::string& command, int64_t default_timeout_ms, const ExecOptions& options) {
  const ChildPlan plan = plan_child(options.limits);
  const std::vector<std::string> allow = options.env;
  return [command, default_timeout_ms, plan, allow](const TaskContext& ctx) {
    const int64_t timeout_ms = ctx.timeout_ms > 0 ? ctx.timeout_ms : default_timeout_ms;
    const std::string input = ctx.task.payload.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);

    // Everything the child needs is built before fork: after fork in a threaded
    // process only async-signal-safe calls are allowed. The environment is an
    // allow-list: the worker's own holds its credentials (RIPEN_REDIS_URL,
    // RIPEN_AMQP_URL), which a task's command has no business reading.
    std::vector<std::string> env_strings;
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string_view kv(*e);
      const std::string_view name = kv.substr(0, kv.find('='));
      if (name.size() == kv.size() || !env_allowed(name, allow)) continue;
      if (std::find(std::begin(kTaskVariables), std::end(kTaskVariables), name) != std::end(kTaskVariables)) continue;
      env_strings.emplace_back(kv);
    }
    env_strings.push_back("RIPEN_TASK_ID=" + ctx.id);
    env_strings.push_back("RIPEN_IDEMPOTENCY_KEY=" + ctx.idempotency_key);
    env_strings.push_back("RIPEN_ATTEMPT=" + std::to_string(ctx.attempt));
    env_strings.push_back("RIPEN_TASK_TYPE=" + ctx.task.type);
    env_strings.push_back("RIPEN_QUEUE=" + ctx.task.queue);
    std::vector<char*> envp;
    envp.reserve(env_strings.size() + 1);
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
      // Its own process group, so that the command and everything it starts
      // can be killed together.
      setpgid(0, 0);
      if (dup2(p.in[0], 0) < 0 || dup2(p.out[1], 1) < 0 || dup2(p.err[1], 2) < 0) _exit(126);
      close_inherited();
      signal(SIGPIPE, SIG_DFL);
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, nullptr);
      // Limits first: once the command runs as an ordinary user it cannot set them.
      for (const auto& [resource, value] : plan.limits) {
        const rlimit l{value, value};
        if (setrlimit(resource, &l) != 0) child_fail("setrlimit failed (worker.exec_limits)");
      }
      if (plan.switch_ids) {
        if (geteuid() == 0 && setgroups(1, &plan.gid) != 0) child_fail("setgroups failed (worker.exec_limits)");
        if (setgid(plan.gid) != 0) child_fail("setgid failed (worker.exec_limits)");
        if (setuid(plan.uid) != 0) child_fail("setuid failed (worker.exec_limits)");
      }
      execve(argv[0], argv, envp.data());
      _exit(127);
    }
    setpgid(pid, pid);  // also from the parent, so the group exists before any kill
    close_fd(p.in[0]);
    close_fd(p.out[1]);
    close_fd(p.err[1]);
    fcntl(p.in[1], F_SETFL, O_NONBLOCK);
    fcntl(p.out[0], F_SETFL, O_NONBLOCK);
    fcntl(p.err[0], F_SETFL, O_NONBLOCK);

    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    size_t written = 0;
    std::string out, err;
    auto cancelled = [&] { return ctx.cancelled != nullptr && ctx.cancelled->load(); };
    const auto read_some = [&](int& fd, std::string& into, size_t keep) {
      char buf[4096];
      const ssize_t n = read(fd, buf, sizeof buf);
      if (n > 0) {
        keep_tail(into, buf, static_cast<size_t>(n), keep);
      } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        close_fd(fd);
      }
      return n > 0;
    };
    if (input.empty()) close_fd(p.in[1]);

    // Until the command itself (the group's leader) exits: feed stdin and
    // drain stdout/stderr together (a command that writes a lot before reading
    // its input would otherwise deadlock against us). Its exit is looked at
    // with WNOWAIT, so it stays a zombie and its process group stays ours to
    // kill: a background child holding the pipes open must not keep the run
    // going, and must not outlive it.
    enum class End { exited, timed_out, wait_failed } end = End::exited;
    int wait_errno = 0;
    for (;;) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0 || cancelled()) {
        end = End::timed_out;
        break;
      }
      siginfo_t info{};
      if (waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
        if (errno == EINTR) continue;
        wait_errno = errno;
        end = End::wait_failed;
        break;
      }
      if (info.si_pid == pid) {
        end = End::exited;
        break;
      }
      const bool pipes_open = p.out[0] >= 0 || p.err[0] >= 0;
      pollfd fds[3] = {{p.out[0], POLLIN, 0}, {p.err[0], POLLIN, 0}, {p.in[1], POLLOUT, 0}};
      const int wait_ms = static_cast<int>(std::min<int64_t>(left.count(), pipes_open ? 50 : 5));
      if (poll(fds, 3, wait_ms) < 0 && errno != EINTR) {
        wait_errno = errno;
        end = End::wait_failed;
        break;
      }
      for (int k = 0; k < 2; ++k) {
        int& fd = k == 0 ? p.out[0] : p.err[0];
        if (fd < 0 || (fds[k].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
        read_some(fd, k == 0 ? out : err, k == 0 ? kStdoutLogged : kStderrTail);
      }
      if (p.in[1] >= 0 && (fds[2].revents & (POLLOUT | POLLERR | POLLHUP)) != 0) {
        const ssize_t n = write(p.in[1], input.data() + written, input.size() - written);
        if (n > 0) written += static_cast<size_t>(n);
        if (n < 0 && errno != EAGAIN && errno != EINTR) close_fd(p.in[1]);  // the command closed stdin: fine
        if (written == input.size()) close_fd(p.in[1]);
      }
    }
    close_fd(p.in[1]);
    // After every run, whatever its end: what the command started goes with it.
    kill(-pid, SIGKILL);
    // What the command wrote before it ended (no longer waited for: read what is there).
    for (int k = 0; k < 2; ++k) {
      int& fd = k == 0 ? p.out[0] : p.err[0];
      for (int reads = 0;
           fd >= 0 && reads < 256 && read_some(fd, k == 0 ? out : err, k == 0 ? kStdoutLogged : kStderrTail); ++reads) {
      }
    }
    int status = 0;
    if (wait_for(pid, &status, 0) < 0 && end == End::exited) {
      wait_errno = errno;
      end = End::wait_failed;
    }
    const std::string stderr_tail = err.empty() ? "" : "; stderr: " + tail(err, kStderrTail);
    if (end == End::wait_failed) {
      // Not knowing how the command ended is not a success.
      throw Failure("exec: cannot wait for the command: " + std::string(std::strerror(wait_errno)) + stderr_tail,
                    "wait_failed");
    }
    if (end == End::timed_out) {
      if (cancelled()) throw Failure("exec: the worker shut down; killed the process group" + stderr_tail);
      throw Failure(
          "exec: timed out after " + std::to_string(timeout_ms) + " ms; killed the process group" + stderr_tail,
          "timeout");
    }
    if (!out.empty()) spdlog::debug("task {} exec stdout: {}", ctx.id, tail(out, kStdoutLogged));
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return;
    const std::string msg = WIFEXITED(status)
                                ? "exec: command exited with status " + std::to_string(WEXITSTATUS(status))
                                : "exec: command killed by signal " + std::to_string(WTERMSIG(status));
    // The code lets [types.<type>] permanent_errors name exit statuses ("exit_2").
    throw Failure(msg + stderr_tail, WIFEXITED(status) ? "exit_" + std::to_string(WEXITSTATUS(status))
                                                       : "signal_" + std::to_string(WTERMSIG(status)));
  };
}

}  // namespace ripen
