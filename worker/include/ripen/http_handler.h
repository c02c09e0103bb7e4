// The built-in http task handler: one HTTP request per task, made with libcurl.
// Off unless configured: it serves the task types of [handlers.http.types]
// (config.h, HttpHandlerConfig), each only to its allowed URL prefixes.
#pragma once

#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "ripen/worker.h"

namespace ripen {

// The payload is {"url": "http://...", "method": "POST" (default; GET, PUT, PATCH, DELETE, HEAD also),
// "headers": {"Name": "value", ...} (optional), "body": a string sent as is (with no Content-Type unless headers
// set one), or any other JSON sent encoded with Content-Type: application/json unless headers set one (optional;
// not with HEAD), "timeout_ms": N (optional)}.
//
// Outcomes, per the Handler contract in worker.h:
// - 2xx -> success (return).
// - 5xx, 408, 429, timeouts, connection errors and the worker's shutdown -> a retryable failure (throws
//   ripen::Failure, which the breaker counts as a downstream failure).
// - Other 4xx, and 3xx (redirects are not followed) -> throws ripen::Permanent: the downstream answered, and
//   retrying the same request cannot help.
// - Error codes (ripen::Failure::code): "http_<status>" for an answer, "timeout" for the time limit.
// - A payload that is not such an object (no url, url not http/https, bad method, a header name that is not a
//   token or a value that is not a one-line string, a header the handler sets itself: Host, Content-Length,
//   Transfer-Encoding, Connection, Upgrade, TE, Trailer, Keep-Alive, Proxy-Connection; an unknown field) -> throws
//   Permanent naming the field (cut to 64 bytes), e.g. "http: field 'headers.X-Count': must be a string". Nothing
//   is sent.
//
// The fence, each refusal a Permanent failure naming the rule, nothing sent:
// - The URL must be under one of the task type's prefixes ([handlers.http.types.<type>] allow): the same scheme,
//   host (case-insensitive) and port (the scheme's when not written), and a path under the prefix's path by whole
//   segments, compared after curl parsed the URL and removed its dot segments; a path with an encoded '.', '/' or
//   a backslash (or a literal one) is refused. Code "http_not_allowed".
// - Every address curl connects to, after DNS resolution, must be a public unicast one (net_address.h): loopback,
//   link-local, private, CGNAT, ULA, multicast, unspecified and reserved addresses, and IPv6 forms carrying them, are
//   refused unless handlers.http.allow_private, or an allow_networks CIDR holds them. Code "http_address_refused".
// - Only http and https; redirects are not followed; no proxy (http_proxy and the like are ignored).
// - A response body over handlers.http.max_response_bytes fails (Permanent, "http_response_too_large": the request
//   was made); a transfer slower than low_speed_bytes per second for low_speed_time fails (retryable, "too_slow").
//
// Delivery is at-least-once, so the request carries `Idempotency-Key: <TaskContext::idempotency_key>` unless the
// payload's headers set one: a downstream that supports it can drop repeats.
//
// The time limit (connect through the last byte) is the least of the payload's timeout_ms and what is left of the
// task's timeout (ctx.deadline, read on the steady clock; ignored when ctx.timeout_ms is 0), or 30 s when neither
// is set. When *ctx.cancelled becomes true the transfer is aborted within about a second.
//
// Error messages name the method, the URL's host[:port] (never its path, query string or credentials), the status
// and the first ~200 bytes of the response body. Each call uses its own curl handle: safe on any number of threads.
// Throws ConfigError for a prefix or network curl cannot parse.
Handler make_http_handler(const HttpHandlerConfig& config);

// The downstream an http task is counted against when its envelope names none: the URL's host[:port], the host
// lowercased, the port only when the URL gives one other than its scheme's (e.g. "api.example.com:8080"); "" when
// the payload has no http(s) URL with a host.
std::string http_downstream(const nlohmann::json& payload);

// The downstreams (as http_downstream names them) of every allowed prefix: each gets a circuit breaker of its own
// (breaker_registry.h).
std::set<std::string> http_known_downstreams(const HttpHandlerConfig& config);
// The checks the handler makes of a payload before it sends anything, alone: ok, or Errc::invalid with the
// message of the ripen::Permanent the handler would throw. Pure (nothing is resolved or sent).
Status check_http_payload(const nlohmann::json& payload);

}  // namespace ripen
