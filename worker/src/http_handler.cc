#include "ripen/http_handler.h"

#include <curl/curl.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

#include "ripen/net_address.h"
#include "ripen/untrusted.h"

namespace ripen {
namespace {

constexpr size_t kBodyKept = 4096;             // response bytes kept; the rest is read and dropped
constexpr size_t kBodyInMessage = 200;         // of those, the bytes an error message shows
constexpr int64_t kDefaultTimeoutMs = 30'000;  // when neither the payload nor the task sets a limit

struct UrlFree {
  void operator()(CURLU* u) const { curl_url_cleanup(u); }
};
struct EasyFree {
  void operator()(CURL* h) const { curl_easy_cleanup(h); }
};
struct SlistFree {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using UrlPtr = std::unique_ptr<CURLU, UrlFree>;

void global_init() {
  // curl_global_init is not thread-safe in every build; once per process is all it needs.
  static std::once_flag once;
  std::call_once(once, [] {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) throw std::runtime_error("http: curl_global_init failed");
  });
}

std::string url_part(CURLU* u, CURLUPart part) {
  char* s = nullptr;
  if (curl_url_get(u, part, &s, 0) != CURLUE_OK || s == nullptr) return {};
  std::string out(s);
  curl_free(s);
  return out;
}

// Null unless `text` is an http or https URL with a host.
UrlPtr parse_url(const std::string& text) {
  UrlPtr u(curl_url());
  if (!u || curl_url_set(u.get(), CURLUPART_URL, text.c_str(), 0) != CURLUE_OK) return nullptr;
  const std::string scheme = url_part(u.get(), CURLUPART_SCHEME);
  if ((scheme != "http" && scheme != "https") || url_part(u.get(), CURLUPART_HOST).empty()) return nullptr;
  return u;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// The port a connection to `u` goes to: the URL's, else its scheme's.
std::string effective_port(CURLU* u) {
  char* s = nullptr;
  if (curl_url_get(u, CURLUPART_PORT, &s, CURLU_DEFAULT_PORT) != CURLUE_OK || s == nullptr) return {};
  std::string out(s);
  curl_free(s);
  return out;
}

std::string host_port(CURLU* u) {
  const std::string host = lower(url_part(u, CURLUPART_HOST));
  const std::string port = url_part(u, CURLUPART_PORT);  // empty unless the URL gives one
  // The scheme's own port written out names the same downstream as no port.
  const std::string standard = lower(url_part(u, CURLUPART_SCHEME)) == "https" ? "443" : "80";
  return port.empty() || port == standard ? host : host + ":" + port;
}

// Where a URL goes, as compared with an allowed prefix: scheme, host and port
// as curl parsed them (the host lowercased, the port made explicit), and the
// path with its dot segments removed (curl_url_set does that, and what is
// sent is that same parsed URL).
struct Target {
  std::string scheme, host, port, path;
};

Target target_of(CURLU* u) {
  std::string path = url_part(u, CURLUPART_PATH);
  if (path.empty()) path = "/";
  return {lower(url_part(u, CURLUPART_SCHEME)), lower(url_part(u, CURLUPART_HOST)), effective_port(u), path};
}

// Whether `url` is under `prefix`: the same scheme, host and port, and the
// path under the prefix's by whole segments ("/v1" covers "/v1" and "/v1/x",
// not "/v10"; "/v1/" covers "/v1/x").
bool under(const Target& url, const Target& prefix) {
  if (url.scheme != prefix.scheme || url.host != prefix.host || url.port != prefix.port) return false;
  if (url.path.compare(0, prefix.path.size(), prefix.path) != 0) return false;
  return prefix.path.back() == '/' || url.path.size() == prefix.path.size() || url.path[prefix.path.size()] == '/';
}

// A path whose encoded dots, slashes or backslashes a server may decode into
// segments that climb out of the prefix ("/v1/%2e%2e/admin").
bool path_is_ambiguous(const std::string& path) {
  const std::string p = lower(path);
  return p.find('\\') != std::string::npos || p.find("%2e") != std::string::npos ||
         p.find("%2f") != std::string::npos || p.find("%5c") != std::string::npos;
}

bool is_token(std::string_view name) {
  if (name.empty()) return false;
  return std::all_of(name.begin(), name.end(), [](unsigned char c) {
    return std::isalnum(c) != 0 ||
           std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
  });
}

// CR or LF in a value would let a payload inject headers or a second request.
bool is_one_line(std::string_view value) { return value.find_first_of(std::string_view("\r\n\0", 3)) == value.npos; }

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](unsigned char x, unsigned char y) {
           return std::tolower(x) == std::tolower(y);
         });
}

[[noreturn]] void field_error(const std::string& field, const std::string& what) {
  throw Permanent("http: field " + quote_short(field) + ": " + what);  // a header name may be any length
}

// Headers the handler's own framing sets: one from the payload could smuggle
// a second request past a proxy, or reach another virtual host.
bool is_framing_header(std::string_view name) {
  static constexpr std::string_view kFraming[] = {"host",       "content-length", "transfer-encoding",
                                                  "connection", "upgrade",        "te",
                                                  "trailer",    "keep-alive",     "proxy-connection"};
  return std::any_of(std::begin(kFraming), std::end(kFraming), [&](std::string_view f) { return iequals(f, name); });
}

struct Request {
  UrlPtr url;
  std::string host;                  // host[:port]: what messages name
  std::vector<std::string> secrets;  // user, password and query of the URL: never in a message
  std::string method = "POST";
  std::vector<std::pair<std::string, std::string>> headers;
  bool has_body = false;
  bool json_body = false;
  std::string body;
  int64_t timeout_ms = 0;  // 0 = the payload sets none

  bool has_header(std::string_view name) const {
    return std::any_of(headers.begin(), headers.end(), [&](const auto& h) { return iequals(h.first, name); });
  }
};

Request parse_payload(const nlohmann::json& p) {
  if (!p.is_object()) throw Permanent("http: the payload must be a JSON object with a 'url'");
  for (const auto& [key, value] : p.items()) {
    if (key != "url" && key != "method" && key != "headers" && key != "body" && key != "timeout_ms") {
      field_error(key, "unknown (expected url, method, headers, body, timeout_ms)");
    }
  }
  Request r;
  // The URL itself is never echoed: it may hold credentials.
  if (!p.contains("url") || !p["url"].is_string()) field_error("url", "required, a string");
  r.url = parse_url(p["url"].get<std::string>());
  if (!r.url) field_error("url", "must be an http:// or https:// URL with a host");
  r.host = host_port(r.url.get());
  for (CURLUPart part : {CURLUPART_USER, CURLUPART_PASSWORD, CURLUPART_QUERY}) {
    if (std::string s = url_part(r.url.get(), part); !s.empty()) r.secrets.push_back(std::move(s));
  }

  if (p.contains("method")) {
    if (!p["method"].is_string()) field_error("method", "must be a string");
    r.method = p["method"].get<std::string>();
    std::transform(r.method.begin(), r.method.end(), r.method.begin(), [](unsigned char c) { return std::toupper(c); });
    static const char* const kMethods[] = {"POST", "GET", "PUT", "PATCH", "DELETE", "HEAD"};
    if (std::find(std::begin(kMethods), std::end(kMethods), r.method) == std::end(kMethods)) {
      field_error("method", "must be one of POST, GET, PUT, PATCH, DELETE, HEAD");
    }
  }

  if (p.contains("headers")) {
    if (!p["headers"].is_object()) field_error("headers", "must be an object of strings");
    for (const auto& [name, value] : p["headers"].items()) {
      if (!is_token(name)) field_error("headers." + name, "is not a valid header name");
      if (is_framing_header(name)) {
        field_error("headers." + name,
                    "is set by the handler and may not be given (Host, Content-Length, Transfer-Encoding, Connection, "
                    "Upgrade, TE, Trailer, Keep-Alive, Proxy-Connection)");
      }
      if (!value.is_string()) field_error("headers." + name, "must be a string");
      std::string v = value.get<std::string>();
      if (!is_one_line(v)) field_error("headers." + name, "must not contain CR, LF or NUL");
      r.headers.emplace_back(name, std::move(v));
    }
  }

  if (p.contains("body") && !p["body"].is_null()) {
    if (r.method == "HEAD") field_error("body", "a HEAD request sends no body");
    r.has_body = true;
    r.json_body = !p["body"].is_string();
    r.body = r.json_body ? p["body"].dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
                         : p["body"].get<std::string>();
  }

  if (p.contains("timeout_ms")) {
    const auto& t = p["timeout_ms"];
    if (!t.is_number_integer() || t.get<int64_t>() <= 0) field_error("timeout_ms", "must be a positive integer");
    r.timeout_ms = t.get<int64_t>();
  }
  return r;
}

std::string redact(std::string text, const std::vector<std::string>& secrets) {
  for (const auto& s : secrets) {
    for (size_t at = text.find(s); at != text.npos; at = text.find(s, at + 3)) text.replace(at, s.size(), "***");
  }
  return text;
}

// The head of a response body for a message: one line, not cut inside a UTF-8 sequence.
std::string snippet(const std::string& body) {
  size_t n = std::min(body.size(), kBodyInMessage);
  while (n < body.size() && n > 0 && (static_cast<unsigned char>(body[n]) & 0xC0) == 0x80) --n;
  std::string s = body.substr(0, n);
  for (char& c : s) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  }
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return n < body.size() ? s + "..." : s;
}

// The response body: its head kept for a message, the rest counted and
// dropped, up to the cap.
struct Sink {
  std::string head;
  int64_t total = 0;
  int64_t max = 0;
  bool too_big = false;
};

size_t keep_head(char* data, size_t size, size_t n, void* user) {
  auto* sink = static_cast<Sink*>(user);
  const size_t bytes = size * n;
  sink->total += static_cast<int64_t>(bytes);
  if (sink->total > sink->max) {
    sink->too_big = true;
    return 0;  // a short count aborts the transfer
  }
  if (sink->head.size() < kBodyKept) sink->head.append(data, std::min(bytes, kBodyKept - sink->head.size()));
  return bytes;
}

// The connection fence: every address curl is about to connect to, after DNS
// resolution (so a name that resolves, or later re-resolves, to an internal
// address is caught), is checked before the socket exists.
struct Fence {
  bool allow_private = false;
  const std::vector<IpNetwork>* networks = nullptr;
  std::string refused;  // why the last address was refused
};

curl_socket_t open_socket(void* user, curlsocktype, curl_sockaddr* a) {
  auto* fence = static_cast<Fence*>(user);
  const auto ip = ip_of(&a->addr);
  if (!ip) {
    fence->refused = "not an IP address";
    return CURL_SOCKET_BAD;
  }
  if (!fence->allow_private) {
    if (const char* kind = special_address_kind(*ip)) {
      const bool allowed = std::any_of(fence->networks->begin(), fence->networks->end(),
                                       [&](const IpNetwork& n) { return n.contains(*ip); });
      if (!allowed) {
        fence->refused = ip_text(*ip) + " is a " + kind + " address";
        return CURL_SOCKET_BAD;
      }
    }
  }
  // Close-on-exec: an exec handler's child must not inherit it.
  return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

int abort_if_cancelled(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  const auto* cancelled = *static_cast<const std::atomic<bool>**>(user);
  return cancelled != nullptr && cancelled->load() ? 1 : 0;
}

// The handler's settings, parsed once at start.
struct Settings {
  HttpHandlerConfig config;
  std::map<std::string, std::vector<Target>> prefixes;  // by task type
  std::vector<IpNetwork> networks;
};

}  // namespace

std::string http_downstream(const nlohmann::json& payload) {
  if (!payload.is_object() || !payload.contains("url") || !payload["url"].is_string()) return {};
  UrlPtr u = parse_url(payload["url"].get<std::string>());
  return u ? host_port(u.get()) : std::string();
}

std::set<std::string> http_known_downstreams(const HttpHandlerConfig& config) {
  std::set<std::string> out;
  for (const auto& [type, prefixes] : config.types) {
    for (const auto& prefix : prefixes) {
      if (UrlPtr u = parse_url(prefix)) out.insert(host_port(u.get()));
    }
  }
  return out;
}

Status check_http_payload(const nlohmann::json& payload) {
  try {
    (void)parse_payload(payload);
    return {};
  } catch (const Permanent& e) {
    return make_error(Errc::invalid, e.what());
  }
}

Handler make_http_handler(const HttpHandlerConfig& config) {
  global_init();
  auto settings = std::make_shared<Settings>();
  settings->config = config;
  for (const auto& [type, prefixes] : config.types) {
    for (const auto& prefix : prefixes) {
      UrlPtr u = parse_url(prefix);
      if (!u || !url_part(u.get(), CURLUPART_QUERY).empty() || !url_part(u.get(), CURLUPART_USER).empty()) {
        throw ConfigError("handlers.http.types." + type + ".allow: '" + cut_text(prefix, 80) +
                          "' is not an http(s) URL prefix with a host and no user or query");
      }
      settings->prefixes[type].push_back(target_of(u.get()));
    }
  }
  for (const auto& n : config.allow_networks) {
    auto net = parse_ip_network(n);
    if (!net) throw ConfigError("handlers.http.allow_networks: " + net.error().message);
    settings->networks.push_back(*net);
  }
  return [settings](const TaskContext& ctx) {
    const HttpHandlerConfig& conf = settings->config;
    const Request req = parse_payload(ctx.task.payload);
    const std::string what = "http: " + req.method + " " + req.host;
    const std::string rule = "handlers.http.types." + ctx.task.type + ".allow";
    const auto allowed = settings->prefixes.find(ctx.task.type);
    const Target target = target_of(req.url.get());
    if (allowed == settings->prefixes.end() ||
        std::none_of(allowed->second.begin(), allowed->second.end(),
                     [&](const Target& prefix) { return under(target, prefix); })) {
      throw Permanent(what + ": the URL is not under a prefix of " + rule + " (scheme, host, port and path compared)",
                      "http_not_allowed");
    }
    if (path_is_ambiguous(target.path)) {
      throw Permanent(what +
                          ": the URL's path has an encoded '.', '/' or '\\', or a '\\': refused, as servers read them "
                          "differently (" +
                          rule + ")",
                      "http_not_allowed");
    }
    const std::atomic<bool>* cancelled = ctx.cancelled;
    if (cancelled != nullptr && cancelled->load()) throw std::runtime_error(what + ": the worker shut down; not sent");

    int64_t limit_ms = req.timeout_ms > 0 ? req.timeout_ms : kDefaultTimeoutMs;
    std::string limit_from = req.timeout_ms > 0 ? "the payload's timeout_ms" : "the default limit";
    if (ctx.timeout_ms > 0) {
      // Bounded by timeout_ms as well, in case the worker's clock is not the steady clock.
      const int64_t left = std::min<int64_t>(ctx.timeout_ms, std::chrono::duration_cast<std::chrono::milliseconds>(
                                                                 ctx.deadline - std::chrono::steady_clock::now())
                                                                 .count());
      if (left <= 0) throw std::runtime_error(what + ": the task's timeout passed before the request was sent");
      if (left < limit_ms) {
        limit_ms = left;
        limit_from = "the task's timeout";
      }
    }

    std::unique_ptr<CURL, EasyFree> easy(curl_easy_init());
    if (!easy) throw std::runtime_error("http: curl_easy_init failed");
    CURL* h = easy.get();
    char errbuf[CURL_ERROR_SIZE] = {};
    Sink response;
    response.max = conf.max_response_bytes;
    Fence fence{conf.allow_private, &settings->networks, {}};
    curl_easy_setopt(h, CURLOPT_CURLU, req.url.get());
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_PROXY, "");  // no proxy from http_proxy & co.: the fence checks where we connect
    curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, &open_socket);
    curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, &fence);
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(conf.max_response_bytes));
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, static_cast<long>(conf.low_speed_bytes));
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, static_cast<long>((conf.low_speed_time_ms + 999) / 1000));
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);  // no SIGALRM for DNS timeouts: handlers run on many threads
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(limit_ms));
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(limit_ms));
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "ripen-worker");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &keep_head);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &response);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, &abort_if_cancelled);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, &cancelled);

    if (req.method == "HEAD") {
      curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (req.has_body || req.method == "POST" || req.method == "PUT" || req.method == "PATCH") {
      // Always set, even when empty: CURLOPT_POST without data would read the body from stdin.
      curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
      curl_easy_setopt(h, CURLOPT_POSTFIELDS, req.body.c_str());
    }
    if (req.method != "POST" && req.method != "HEAD") curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req.method.c_str());

    std::vector<std::string> lines;
    for (const auto& [name, value] : req.headers) {
      // "Name:" would remove the header; "Name;" sends it empty.
      lines.push_back(value.empty() ? name + ";" : std::string(name).append(": ").append(value));
    }
    if (!req.has_header("Idempotency-Key") && !ctx.idempotency_key.empty() && is_one_line(ctx.idempotency_key)) {
      lines.push_back("Idempotency-Key: " + ctx.idempotency_key);
    }
    if (req.has_body && !req.has_header("Content-Type")) {
      // A string body is sent as is: not labelled as the form curl assumes for POST data.
      lines.push_back(req.json_body ? "Content-Type: application/json" : "Content-Type:");
    }
    // Our own time limit governs; curl's 100-continue wait would spend a second of it on servers that ignore it.
    if (!req.has_header("Expect")) lines.push_back("Expect:");
    std::unique_ptr<curl_slist, SlistFree> headers;
    for (const auto& line : lines) {
      curl_slist* next = curl_slist_append(headers.get(), line.c_str());
      if (next == nullptr) throw std::runtime_error("http: out of memory building headers");
      static_cast<void>(headers.release());  // `next` is the same list, now one longer
      headers.reset(next);
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.get());

    const CURLcode rc = curl_easy_perform(h);
    if (rc == CURLE_ABORTED_BY_CALLBACK) throw std::runtime_error(what + ": the worker shut down; aborted the request");
    if (rc != CURLE_OK && !fence.refused.empty()) {
      throw Permanent(what + ": refused to connect: " + fence.refused +
                          " (allow it with handlers.http.allow_networks or allow_private)",
                      "http_address_refused");
    }
    if (response.too_big || rc == CURLE_FILESIZE_EXCEEDED) {
      throw Permanent(what + ": the response is larger than handlers.http.max_response_bytes (" +
                          std::to_string(conf.max_response_bytes) + " bytes)",
                      "http_response_too_large");
    }
    if (rc == CURLE_OPERATION_TIMEDOUT && std::string_view(errbuf).rfind("Operation too slow", 0) == 0) {
      throw Failure(what + ": too slow: under " + std::to_string(conf.low_speed_bytes) + " bytes/s for " +
                        std::to_string((conf.low_speed_time_ms + 999) / 1000) +
                        " s (handlers.http.low_speed_bytes, low_speed_time)",
                    "too_slow");
    }
    if (rc == CURLE_OPERATION_TIMEDOUT) {
      throw Failure(what + ": timed out after " + std::to_string(limit_ms) + " ms (" + limit_from + ")", "timeout");
    }
    if (rc != CURLE_OK) {
      throw std::runtime_error(what + ": " + redact(errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc), req.secrets));
    }
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 200 && status < 300) {
      spdlog::debug("task {} {} answered {}", ctx.id, what, status);
      return;
    }
    std::string msg = what + " answered " + std::to_string(status);
    if (status >= 300 && status < 400) msg += " (redirects are not followed)";
    if (const std::string s = redact(snippet(response.head), req.secrets); !s.empty()) msg += ": " + s;
    const std::string code = "http_" + std::to_string(status);
    if (status >= 500 || status == 408 || status == 429 || status < 200) throw Failure(msg, code);
    throw Permanent(msg, code);
  };
}

}  // namespace ripen
