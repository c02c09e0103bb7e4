// A RAII connection to RabbitMQ over rabbitmq-c, on one channel. rabbitmq-c
// connections are not thread-safe: one Amqp belongs to one thread. Errors carry
// the broker's own reply text (e.g. "PRECONDITION_FAILED - inequivalent arg ...").
// After any connection or channel error the connection is torn down and the next
// call reconnects, paced by a backoff.
#pragma once

#include <amqp.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "ripen/backoff.h"
#include "ripen/clock.h"
#include "ripen/config.h"
#include "ripen/result.h"

namespace ripen {

struct AmqpUrl {
  std::string host = "127.0.0.1";
  int port = 5672;  // 5671 for amqps:// without a port
  std::string user = "guest";
  std::string password = "guest";
  std::string vhost = "/";
  // amqps://: TLS, with the broker's certificate checked per tls_options
  // (chain and host name by default).
  bool tls = false;
  AmqpTlsConfig tls_options;
  std::string redacted() const;
};

// amqp[s]://user:pass@host:port/vhost (each part percent-encoded: "/" is %2f).
// A refusal never quotes the URL: it may hold a password.
Result<AmqpUrl> parse_amqp_url(std::string_view url);
// The config's amqp_url, parsed, with config.amqp_password (a password file or
// RIPEN_AMQP_PASSWORD) in place of the URL's and config.amqp_tls as its TLS
// options; a ConfigError naming amqp_url when malformed.
AmqpUrl amqp_url_of(const Config& config);

using AmqpValue = std::variant<std::string, int64_t, bool>;
using AmqpTable = std::vector<std::pair<std::string, AmqpValue>>;

struct AmqpMessageProps {
  std::string message_id;
  std::string content_type = "application/json";
  bool persistent = true;
  std::optional<uint8_t> priority;
  std::string correlation_id;
  std::string reply_to;
  std::string user_id;  // the connection's user, checked by the broker; empty: not set
  AmqpTable headers;
};

// A message taken with basic.get.
struct AmqpGot {
  uint64_t delivery_tag = 0;  // for ack()/nack() when taken without no_ack
  std::string body;
  std::string message_id;
  std::string correlation_id;
  std::map<std::string, std::string> headers;  // values rendered as strings
};

// What a passive queue.declare reports of a queue.
struct AmqpQueueCounts {
  uint32_t messages = 0;   // ready for delivery (not those delivered and unacked)
  uint32_t consumers = 0;  // consuming it now
};

// connection.blocked / unblocked from the broker: a resource alarm (memory,
// disk) stops it reading from connections that publish, until it clears.
struct AmqpBlocked {
  bool blocked = false;  // false: unblocked
  std::string reason;    // e.g. "low on memory"
};

class Amqp {
 public:
  explicit Amqp(AmqpUrl url, std::chrono::milliseconds timeout = std::chrono::seconds(5),
                Clock& clock = SystemClock::instance());
  ~Amqp();
  Amqp(const Amqp&) = delete;
  Amqp& operator=(const Amqp&) = delete;

  static constexpr amqp_channel_t kChannel = 1;

  Status connect();
  bool connected() const { return conn_ != nullptr; }
  void close();
  // Ensures a connection, reconnecting if the backoff allows.
  Status ensure_connected();
  amqp_connection_state_t raw() { return conn_; }

  Status declare_exchange(const std::string& name, const std::string& type, const AmqpTable& args = {});
  Status declare_queue(const std::string& name, const AmqpTable& args = {});
  Status bind_queue(const std::string& queue, const std::string& exchange, const std::string& routing_key);
  Status delete_queue(const std::string& name);
  Result<AmqpQueueCounts> queue_counts(const std::string& name);  // passive declare
  Result<uint32_t> queue_message_count(const std::string& name);  // its messages
  Result<uint32_t> purge_queue(const std::string& name);          // how many messages it removed
  // Takes the next message of `queue` (nullopt when it is empty). Without
  // no_ack it stays unacked on this connection until ack()/nack(), or until the
  // connection closes, when the broker puts it back where it was.
  Result<std::optional<AmqpGot>> get(const std::string& queue, bool no_ack);
  Status confirm_select();
  // RabbitMQ's reading of basic.qos: the limit applies to each consumer started
  // after it on this channel.
  Status qos(uint16_t prefetch);
  Result<std::string> consume(const std::string& queue, const std::string& consumer_tag = "");
  Status cancel(const std::string& consumer_tag);

  Status publish(const std::string& exchange, const std::string& routing_key, std::string_view body,
                 const AmqpMessageProps& props, bool mandatory);
  Status ack(uint64_t delivery_tag, bool multiple = false);
  Status nack(uint64_t delivery_tag, bool requeue, bool multiple = false);

  // Turns an RPC reply into a Status, tearing the connection down on failure.
  // The channel closed with 404 NOT_FOUND (no such queue or exchange) is
  // Errc::not_found, and the next call may connect again at once; any other
  // refusal by the broker is Errc::server.
  Status check(amqp_rpc_reply_t reply, std::string_view what);
  // Reports a library error code (negative int), tearing down the connection.
  Error fail(int status, std::string_view what);
  // When `frame` ends what this connection was doing (channel.close or
  // connection.close from the broker, or basic.cancel of a consumer: its queue
  // was deleted), tears the connection down and says why; nullopt for any other frame.
  std::optional<Error> closed_by(const amqp_frame_t& frame, std::string_view what);
  // When `frame` is connection.blocked or connection.unblocked, which; the
  // connection announces at login that it understands them.
  static std::optional<AmqpBlocked> blocked_by(const amqp_frame_t& frame);

  const AmqpUrl& url() const { return url_; }

 private:
  // A TLS socket on conn_ set up from url_.tls_options.
  Status tls_socket(amqp_socket_t*& socket);

  AmqpUrl url_;
  std::chrono::milliseconds timeout_;
  amqp_connection_state_t conn_ = nullptr;
  ReconnectPacer pacer_;
};

// Builds an amqp_table_t whose storage lives as long as this object.
class AmqpTableBuilder {
 public:
  explicit AmqpTableBuilder(const AmqpTable& table);
  amqp_table_t table() { return {static_cast<int>(entries_.size()), entries_.data()}; }

 private:
  std::vector<std::string> strings_;
  std::vector<amqp_table_entry_t> entries_;
};

// Reads a header value from a received table as a string ("" when absent).
std::string amqp_header_string(const amqp_table_t& table, std::string_view key);
std::string to_string(amqp_bytes_t bytes);

}  // namespace ripen
