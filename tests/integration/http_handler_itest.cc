// The built-in http handler against a loopback HTTP server: what it sends,
// which answers are success, a retryable failure or a permanent one, and its
// fence (allowed prefixes, addresses checked after DNS, framing headers, the
// response cap). Needs no Redis or RabbitMQ: the handler is called directly
// with a hand-built TaskContext. The loopback server is reached only because
// each test's config allows it (allow_networks), as an operator would.
#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "http_server.h"
#include "ripen/http_handler.h"
#include "ripen/worker.h"
#include "testing.h"

namespace ripen {
namespace {

using json = nlohmann::json;
using std::chrono::milliseconds;
using testing::HttpServer;

enum class Outcome { success, retry, permanent };

struct Ran {
  Outcome outcome = Outcome::success;
  std::string message;
  milliseconds took{0};
};

// A config whose type "http" may reach `prefixes`, with the loopback address
// allowed (the test server's) unless `loopback` is false.
HttpHandlerConfig allowing(std::vector<std::string> prefixes, bool loopback = true) {
  HttpHandlerConfig c;
  c.types["http"] = std::move(prefixes);
  if (loopback) c.allow_networks = {"127.0.0.1/32", "::1"};
  return c;
}

// The handler of a worker configured with allowing({server's root}).
Handler local(const HttpServer& server) { return make_http_handler(allowing({server.url("/")})); }

// Runs the handler as the worker would, with a task timeout of `timeout_ms`.
Ran run(const Handler& handler, const json& payload, int64_t timeout_ms = 5000,
        const std::atomic<bool>* cancelled = nullptr, const std::string& type = "http") {
  const Envelope task = testing::make_task(type, payload);
  const TaskContext ctx{
      task,    "task-1", "key-1", 1, 0, timeout_ms, std::chrono::steady_clock::now() + milliseconds(timeout_ms),
      nullptr, cancelled};
  Ran ran;
  const auto start = std::chrono::steady_clock::now();
  try {
    handler(ctx);
  } catch (const Permanent& e) {
    ran = {Outcome::permanent, e.what()};
  } catch (const std::exception& e) {
    ran = {Outcome::retry, e.what()};
  }
  ran.took = std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - start);
  return ran;
}

HttpServer::Handler answer(int status, const std::string& body = "", milliseconds delay = milliseconds(0)) {
  return [=](const HttpServer::Request&) { return HttpServer::Response{status, body, delay, {}}; };
}

TEST(HttpHandler, SuccessOn2xxSendsMethodHeadersBodyAndIdempotencyKey) {
  HttpServer server;
  server.set_handler(answer(201));
  const Ran ran = run(local(server), {{"url", server.url("/items?x=1")},
                                      {"method", "PUT"},
                                      {"headers", {{"X-Trace", "abc"}}},
                                      {"body", "plain text"}});
  EXPECT_EQ(ran.outcome, Outcome::success) << ran.message;
  ASSERT_EQ(server.requests(), 1);
  const auto req = *server.last_request();
  EXPECT_EQ(req.method, "PUT");
  EXPECT_EQ(req.path, "/items?x=1");
  EXPECT_EQ(req.headers.at("x-trace"), "abc");
  EXPECT_EQ(req.headers.at("idempotency-key"), "key-1");
  EXPECT_EQ(req.body, "plain text");
  EXPECT_EQ(req.headers.count("content-type"), 0u) << "a string body is sent as is, not labelled as a form";

  // The payload's own Idempotency-Key wins, in any case.
  EXPECT_EQ(run(local(server), {{"url", server.url()}, {"headers", {{"idempotency-key", "mine"}}}}).outcome,
            Outcome::success);
  EXPECT_EQ(server.last_request()->headers.at("idempotency-key"), "mine");

  for (const char* method : {"GET", "DELETE", "PATCH", "HEAD"}) {
    const Ran r = run(local(server), {{"url", server.url("/m")}, {"method", method}});
    EXPECT_EQ(r.outcome, Outcome::success) << method << ": " << r.message;
    EXPECT_EQ(server.last_request()->method, method);
  }
  server.set_handler(answer(204));
  EXPECT_EQ(run(local(server), {{"url", server.url()}}).outcome, Outcome::success);
  EXPECT_EQ(server.last_request()->method, "POST") << "POST is the default";
}

TEST(HttpHandler, JsonBodyIsSentAsJson) {
  HttpServer server;
  const json body = {{"order", 42}, {"items", {"a", "b"}}};
  EXPECT_EQ(run(local(server), {{"url", server.url("/orders")}, {"body", body}}).outcome, Outcome::success);
  auto req = *server.last_request();
  EXPECT_EQ(req.method, "POST");
  EXPECT_EQ(req.headers.at("content-type"), "application/json");
  EXPECT_EQ(json::parse(req.body), body);

  // A Content-Type in the payload's headers is kept.
  EXPECT_EQ(run(local(server),
                {{"url", server.url()}, {"headers", {{"Content-Type", "application/vnd.x+json"}}}, {"body", {1, 2}}})
                .outcome,
            Outcome::success);
  req = *server.last_request();
  EXPECT_EQ(req.headers.at("content-type"), "application/vnd.x+json");
  EXPECT_EQ(req.body, "[1,2]");
}

TEST(HttpHandler, ServerErrorIsRetryable) {
  HttpServer server;
  server.set_handler(answer(503, "down for maintenance\n" + std::string(1000, 'x')));
  const Ran ran = run(local(server), {{"url", server.url("/hook")}});
  EXPECT_EQ(ran.outcome, Outcome::retry);
  EXPECT_NE(ran.message.find("503"), std::string::npos) << ran.message;
  EXPECT_NE(ran.message.find("127.0.0.1:" + std::to_string(server.port())), std::string::npos) << ran.message;
  EXPECT_NE(ran.message.find("down for maintenance"), std::string::npos) << ran.message;
  EXPECT_LT(ran.message.size(), 300u) << "only the head of the body: " << ran.message;
}

TEST(HttpHandler, NotFoundIsPermanent) {
  HttpServer server;
  server.set_handler(answer(404, "no such hook"));
  const Ran ran = run(local(server), {{"url", server.url("/missing")}});
  EXPECT_EQ(ran.outcome, Outcome::permanent);
  EXPECT_NE(ran.message.find("404: no such hook"), std::string::npos) << ran.message;

  server.set_handler(answer(302));  // redirects are not followed
  EXPECT_EQ(run(local(server), {{"url", server.url()}}).outcome, Outcome::permanent);
  EXPECT_EQ(server.requests(), 2);
}

TEST(HttpHandler, TooManyRequestsIsRetryable) {
  HttpServer server;
  server.set_handler(answer(429, "slow down"));
  EXPECT_EQ(run(local(server), {{"url", server.url()}}).outcome, Outcome::retry);
  server.set_handler(answer(408));
  EXPECT_EQ(run(local(server), {{"url", server.url()}}).outcome, Outcome::retry);
}

TEST(HttpHandler, TimeoutIsRetryableAndNamesTheTimeout) {
  HttpServer server;
  server.set_handler(answer(200, "", milliseconds(3000)));
  const Ran ran = run(local(server), {{"url", server.url()}, {"timeout_ms", 200}});
  EXPECT_EQ(ran.outcome, Outcome::retry);
  EXPECT_NE(ran.message.find("timed out after 200 ms (the payload's timeout_ms)"), std::string::npos) << ran.message;
  EXPECT_GE(ran.took, milliseconds(200));
  EXPECT_LT(ran.took, milliseconds(2000));

  // The task's timeout, when shorter, is the limit.
  const Ran by_task = run(local(server), {{"url", server.url()}, {"timeout_ms", 2500}}, 300);
  EXPECT_EQ(by_task.outcome, Outcome::retry);
  EXPECT_NE(by_task.message.find("(the task's timeout)"), std::string::npos) << by_task.message;
  EXPECT_LT(by_task.took, milliseconds(2000));
}

TEST(HttpHandler, CancelledAbortsTheTransfer) {
  HttpServer server;
  server.set_handler(answer(200, "", milliseconds(10'000)));
  std::atomic<bool> cancelled{false};
  std::thread canceller([&] {
    testing::wait_until([&] { return server.requests() == 1; }, milliseconds(5000));
    cancelled.store(true);
  });
  const Ran ran = run(local(server), {{"url", server.url()}}, 20'000, &cancelled);
  canceller.join();
  EXPECT_EQ(ran.outcome, Outcome::retry);
  EXPECT_NE(ran.message.find("shut down"), std::string::npos) << ran.message;
  EXPECT_LT(ran.took, milliseconds(3000)) << "the progress callback runs at least once a second";

  // Already cancelled: nothing is sent.
  EXPECT_EQ(run(local(server), {{"url", server.url()}}, 5000, &cancelled).outcome, Outcome::retry);
  EXPECT_EQ(server.requests(), 1);
}

TEST(HttpHandler, ConnectionRefusedIsRetryable) {
  const int port = testing::free_port();
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/";
  const Ran ran = run(make_http_handler(allowing({url})), {{"url", url}});
  EXPECT_EQ(ran.outcome, Outcome::retry);
  EXPECT_NE(ran.message.find("127.0.0.1:" + std::to_string(port)), std::string::npos) << ran.message;
}

TEST(HttpHandler, BadPayloadIsPermanentAndNamesTheField) {
  HttpServer server;
  const auto expect_field = [&](const json& payload, const std::string& field) {
    const Ran ran = run(local(server), payload);
    EXPECT_EQ(ran.outcome, Outcome::permanent) << payload.dump();
    EXPECT_NE(ran.message.find("field '" + field + "'"), std::string::npos) << ran.message;
  };
  expect_field({{"method", "GET"}}, "url");
  expect_field({{"url", "ftp://127.0.0.1/file"}}, "url");
  expect_field({{"url", 7}}, "url");
  expect_field({{"url", server.url()}, {"method", "FETCH"}}, "method");
  expect_field({{"url", server.url()}, {"headers", {{"X-Count", 3}}}}, "headers.X-Count");
  expect_field({{"url", server.url()}, {"headers", {{"X-Evil", "a\r\nHost: other"}}}}, "headers.X-Evil");
  expect_field({{"url", server.url()}, {"timeout_ms", -5}}, "timeout_ms");
  expect_field({{"url", server.url()}, {"header", {{"X-Typo", "1"}}}}, "header");
  EXPECT_EQ(run(local(server), json::array({1, 2})).outcome, Outcome::permanent);
  EXPECT_EQ(run(local(server), nullptr).outcome, Outcome::permanent);
  EXPECT_EQ(server.requests(), 0);
}

TEST(HttpHandler, ErrorMessageDoesNotLeakTheQueryOrCredentials) {
  HttpServer server;
  server.set_handler(answer(500, "boom"));
  const std::string secret_url =
      "http://alice:s3cretpw@127.0.0.1:" + std::to_string(server.port()) + "/hook?token=tok-9f8e7d";
  const Ran answered = run(local(server), {{"url", secret_url}});
  const std::string closed_port = std::to_string(testing::free_port());
  const Ran refused = run(make_http_handler(allowing({"http://127.0.0.1:" + closed_port + "/"})),
                          {{"url", "http://alice:s3cretpw@127.0.0.1:" + closed_port + "/hook?token=tok-9f8e7d"}});
  const Ran bad = run(local(server), {{"url", "ftp://alice:s3cretpw@127.0.0.1/hook?token=tok-9f8e7d"}});
  for (const Ran& ran : {answered, refused, bad}) {
    EXPECT_NE(ran.outcome, Outcome::success);
    for (const char* secret : {"s3cretpw", "tok-9f8e7d", "alice", "/hook"}) {
      EXPECT_EQ(ran.message.find(secret), std::string::npos) << secret << " in: " << ran.message;
    }
  }
  EXPECT_NE(answered.message.find("127.0.0.1:" + std::to_string(server.port()) + " answered 500: boom"),
            std::string::npos)
      << answered.message;
  EXPECT_EQ(server.last_request()->path, "/hook?token=tok-9f8e7d") << "the request itself is whole";
}

TEST(HttpHandler, DownstreamIsTheUrlsHostAndPort) {
  EXPECT_EQ(http_downstream({{"url", "http://api.example.com:8080/x?q=1"}}), "api.example.com:8080");
  EXPECT_EQ(http_downstream({{"url", "https://user:pw@API.Example.com/x"}}), "api.example.com");
  EXPECT_EQ(http_downstream({{"url", "https://api.example.com:443/x"}}), "api.example.com") << "the scheme's port";
  EXPECT_EQ(http_downstream({{"url", "http://api.example.com:80/x"}}), "api.example.com");
  EXPECT_EQ(http_downstream({{"url", "http://api.example.com:443/x"}}), "api.example.com:443");
  EXPECT_EQ(http_downstream({{"url", "http://[::1]:9000/"}}), "[::1]:9000");
  EXPECT_EQ(http_downstream({{"url", "ftp://files.example.com/"}}), "");
  EXPECT_EQ(http_downstream({{"url", 5}}), "");
  EXPECT_EQ(http_downstream(json::object()), "");
  EXPECT_EQ(http_downstream(nullptr), "");
}

// ---- the fence ------------------------------------------------------------------

TEST(HttpFence, ALoopbackUrlIsRefusedWithoutTheAllow) {
  HttpServer server;
  const Ran ran = run(make_http_handler(allowing({server.url("/")}, false)), {{"url", server.url("/hook")}});
  EXPECT_EQ(ran.outcome, Outcome::permanent);
  EXPECT_NE(ran.message.find("refused to connect: 127.0.0.1 is a loopback address"), std::string::npos) << ran.message;
  EXPECT_NE(ran.message.find("handlers.http.allow_networks"), std::string::npos) << ran.message;
  EXPECT_EQ(server.requests(), 0);

  HttpHandlerConfig all_private = allowing({server.url("/")}, false);
  all_private.allow_private = true;
  EXPECT_EQ(run(make_http_handler(all_private), {{"url", server.url("/hook")}}).outcome, Outcome::success);
  EXPECT_EQ(server.requests(), 1);
}

TEST(HttpFence, AHostNameResolvingToLoopbackIsRefusedAfterResolution) {
  HttpServer server;
  const std::string url = "http://localhost:" + std::to_string(server.port()) + "/hook";
  const Ran ran = run(make_http_handler(allowing({url}, false)), {{"url", url}});
  EXPECT_EQ(ran.outcome, Outcome::permanent);
  EXPECT_NE(ran.message.find("is a loopback address"), std::string::npos) << ran.message;
  EXPECT_EQ(server.requests(), 0);

  // The same name with its address allowed: the refusal was the address's.
  EXPECT_EQ(run(make_http_handler(allowing({url})), {{"url", url}}).outcome, Outcome::success);
  EXPECT_EQ(server.requests(), 1);
}

TEST(HttpFence, AUrlOutsideItsTypesPrefixesIsRefusedNamingTheRule) {
  HttpServer server;
  const std::string root = server.url("/");
  const std::string port = std::to_string(server.port());
  HttpHandlerConfig config = allowing({server.url("/v1/"), server.url("/v2")});
  config.types["other"] = {"https://api.example.com/"};
  const Handler handler = make_http_handler(config);
  const auto refused = [&](const std::string& url, const std::string& type = "http") {
    const Ran ran = run(handler, {{"url", url}}, 5000, nullptr, type);
    EXPECT_EQ(ran.outcome, Outcome::permanent) << url;
    EXPECT_NE(ran.message.find("handlers.http.types." + type + ".allow"), std::string::npos) << ran.message;
  };
  EXPECT_EQ(run(handler, {{"url", server.url("/v1/items")}}).outcome, Outcome::success);
  EXPECT_EQ(run(handler, {{"url", server.url("/v2")}}).outcome, Outcome::success);
  EXPECT_EQ(run(handler, {{"url", server.url("/v2/x")}}).outcome, Outcome::success);
  EXPECT_EQ(server.requests(), 3);
  refused(server.url("/v1"));   // "/v1/" covers what is under it only
  refused(server.url("/v20"));  // "/v2" covers whole segments
  refused(server.url("/admin"));
  refused(server.url("/v1/../admin"));  // dot segments removed before the comparison
  refused(server.url("/v1/%2e%2e/admin"));
  refused(server.url("/v1/..%2fadmin"));
  refused("http://127.0.0.1:" + std::to_string(testing::free_port()) + "/v1/");  // another port
  refused("https://127.0.0.1:" + port + "/v1/");                                 // another scheme
  refused("http://localhost:" + port + "/v1/");                                  // another host name
  refused("http://127.0.0.1:" + port + "@127.0.0.2:" + port + "/v1/");           // the host after the '@'
  refused(server.url("/v1/items"), "other");                                     // another type's prefixes
  EXPECT_EQ(server.requests(), 3) << "nothing refused was sent";
}

TEST(HttpFence, FramingHeadersInThePayloadAreRefused) {
  HttpServer server;
  const auto expect_refused = [&](const std::string& name) {
    const Ran ran = run(local(server), {{"url", server.url()}, {"headers", {{name, "x"}}}});
    EXPECT_EQ(ran.outcome, Outcome::permanent) << name;
    EXPECT_NE(ran.message.find("field 'headers." + name + "': is set by the handler"), std::string::npos)
        << ran.message;
  };
  for (const char* name : {"Host", "host", "Content-Length", "TRANSFER-ENCODING", "Connection", "Upgrade"}) {
    expect_refused(name);
  }
  EXPECT_EQ(run(local(server), {{"url", server.url()}, {"headers", {{"X-A\r\nHost", "x"}}}}).outcome,
            Outcome::permanent);
  EXPECT_EQ(run(local(server), {{"url", server.url()}, {"headers", {{"X-A", "x\nHost: y"}}}}).outcome,
            Outcome::permanent);
  EXPECT_EQ(server.requests(), 0);
}

TEST(HttpFence, AResponseOverTheCapFailsAndItsExcerptStaysShort) {
  HttpServer server;
  server.set_handler(answer(200, std::string(10'000, 'x')));
  HttpHandlerConfig config = allowing({server.url("/")});
  config.max_response_bytes = 4096;
  const Ran ran = run(make_http_handler(config), {{"url", server.url()}});
  EXPECT_EQ(ran.outcome, Outcome::permanent);
  EXPECT_NE(ran.message.find("larger than handlers.http.max_response_bytes (4096 bytes)"), std::string::npos)
      << ran.message;
  config.max_response_bytes = 10'000;
  EXPECT_EQ(run(make_http_handler(config), {{"url", server.url()}}).outcome, Outcome::success) << "at the cap";
}

TEST(HttpFence, AStalledResponseIsAbortedByTheLowSpeedLimit) {
  HttpServer server;
  server.set_handler(answer(200, "late", milliseconds(5000)));
  HttpHandlerConfig config = allowing({server.url("/")});
  config.low_speed_time_ms = 1000;
  const Ran ran = run(make_http_handler(config), {{"url", server.url()}}, 20'000);
  EXPECT_EQ(ran.outcome, Outcome::retry);
  EXPECT_NE(ran.message.find("too slow"), std::string::npos) << ran.message;
  EXPECT_LT(ran.took, milliseconds(4000));
}

TEST(HttpFence, AHugeFieldNameIsQuotedCutShort) {
  HttpServer server;
  const std::string name(140'000, 'n');
  const Ran unknown = run(local(server), {{"url", server.url()}, {name, 1}});
  EXPECT_EQ(unknown.outcome, Outcome::permanent);
  EXPECT_LT(unknown.message.size(), 300u);
  const Ran header = run(local(server), {{"url", server.url()}, {"headers", {{name, 1}}}});
  EXPECT_EQ(header.outcome, Outcome::permanent);
  EXPECT_LT(header.message.size(), 300u);
}

}  // namespace
}  // namespace ripen
