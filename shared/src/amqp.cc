#include "ripen/amqp.h"

#include <amqp_framing.h>
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <openssl/ssl.h>
#include <sys/time.h>

#include <algorithm>
#include <cstring>

#include <spdlog/spdlog.h>

namespace ripen {
namespace {

// rabbitmq-c sends and checks heartbeats only while the thread is inside the
// library; every loop here calls in at least every few hundred ms.
constexpr int kHeartbeatSeconds = 30;

amqp_bytes_t bytes_of(std::string_view s) { return {s.size(), const_cast<char*>(s.data())}; }

std::string server_text(const amqp_rpc_reply_t& r) {
  switch (r.reply.id) {
    case AMQP_CONNECTION_CLOSE_METHOD: {
      auto* m = static_cast<amqp_connection_close_t*>(r.reply.decoded);
      return "connection closed by broker: " + std::to_string(m->reply_code) + " " + to_string(m->reply_text);
    }
    case AMQP_CHANNEL_CLOSE_METHOD: {
      auto* m = static_cast<amqp_channel_close_t*>(r.reply.decoded);
      return "channel closed by broker: " + std::to_string(m->reply_code) + " " + to_string(m->reply_text);
    }
    default:
      return "unexpected broker method " + std::to_string(r.reply.id);
  }
}

}  // namespace

std::string to_string(amqp_bytes_t bytes) {
  if (bytes.len == 0 || bytes.bytes == nullptr) return {};
  return {static_cast<const char*>(bytes.bytes), bytes.len};
}

std::string AmqpUrl::redacted() const {
  return std::string(tls ? "amqps://" : "amqp://") + user + ":***@" + host + ":" + std::to_string(port) + "/" + vhost;
}

Result<AmqpUrl> parse_amqp_url(std::string_view url) {
  // No part of the URL is quoted back in these errors: it may hold a password.
  if (url.substr(0, 7) != "amqp://" && url.substr(0, 8) != "amqps://") {
    return make_error(Errc::invalid, url.find("://") == std::string_view::npos
                                         ? "AMQP URL must start with amqp:// or amqps://; it has no scheme"
                                         : "AMQP URL must start with amqp:// or amqps://");
  }
  // rabbitmq-c's parser: it percent-decodes user, password and vhost, and
  // knows amqps:// and its default port.
  std::string copy(url);
  amqp_connection_info info{};
  if (amqp_parse_url(copy.data(), &info) != AMQP_STATUS_OK) {
    return make_error(Errc::invalid, "AMQP URL is malformed; expected amqp[s]://user:pass@host:port/vhost");
  }
  AmqpUrl out;
  out.host = info.host;
  out.port = info.port;
  out.user = info.user;
  out.password = info.password;
  out.vhost = info.vhost;
  out.tls = info.ssl != 0;
  if (out.host.empty()) return make_error(Errc::invalid, "AMQP URL: host is empty");
  return out;
}

AmqpUrl amqp_url_of(const Config& config) {
  auto url = parse_amqp_url(config.amqp_url);
  if (!url) throw ConfigError("amqp_url: " + url.error().message);
  if (config.amqp_password) url->password = *config.amqp_password;
  url->tls_options = config.amqp_tls;
  return *url;
}

AmqpTableBuilder::AmqpTableBuilder(const AmqpTable& table) {
  strings_.reserve(table.size() * 2);  // pointers into strings_ must stay put
  entries_.reserve(table.size());
  for (const auto& [key, value] : table) {
    amqp_table_entry_t e{};
    strings_.push_back(key);
    e.key = bytes_of(strings_.back());
    if (const auto* s = std::get_if<std::string>(&value)) {
      strings_.push_back(*s);
      e.value.kind = AMQP_FIELD_KIND_UTF8;
      e.value.value.bytes = bytes_of(strings_.back());
    } else if (const auto* i = std::get_if<int64_t>(&value)) {
      e.value.kind = AMQP_FIELD_KIND_I64;
      e.value.value.i64 = *i;
    } else {
      e.value.kind = AMQP_FIELD_KIND_BOOLEAN;
      e.value.value.boolean = std::get<bool>(value) ? 1 : 0;
    }
    entries_.push_back(e);
  }
}

std::string amqp_header_string(const amqp_table_t& table, std::string_view key) {
  for (int i = 0; i < table.num_entries; ++i) {
    const auto& e = table.entries[i];
    if (to_string(e.key) != key) continue;
    switch (e.value.kind) {
      case AMQP_FIELD_KIND_UTF8:
      case AMQP_FIELD_KIND_BYTES:
        return to_string(e.value.value.bytes);
      case AMQP_FIELD_KIND_I64:
        return std::to_string(e.value.value.i64);
      case AMQP_FIELD_KIND_I32:
        return std::to_string(e.value.value.i32);
      case AMQP_FIELD_KIND_BOOLEAN:
        return e.value.value.boolean ? "true" : "false";
      default:
        return {};
    }
  }
  return {};
}

Amqp::Amqp(AmqpUrl url, std::chrono::milliseconds timeout, Clock& clock)
    : url_(std::move(url)), timeout_(timeout), pacer_(clock) {}

Amqp::~Amqp() { close(); }

void Amqp::close() {
  if (conn_ == nullptr) return;
  // A polite close when the socket still works; either way the state is freed.
  amqp_connection_close(conn_, AMQP_REPLY_SUCCESS);
  amqp_destroy_connection(conn_);
  conn_ = nullptr;
}

Error Amqp::fail(int status, std::string_view what) {
  std::string msg = "amqp " + url_.redacted() + ": " + std::string(what) + ": " + amqp_error_string2(status);
  if (conn_ != nullptr) {
    amqp_destroy_connection(conn_);
    conn_ = nullptr;
  }
  pacer_.failed();
  const Errc code = status == AMQP_STATUS_TIMEOUT ? Errc::timeout : Errc::unavailable;
  return make_error(code, msg);
}

Status Amqp::check(amqp_rpc_reply_t reply, std::string_view what) {
  switch (reply.reply_type) {
    case AMQP_RESPONSE_NORMAL:
      return {};
    case AMQP_RESPONSE_NONE:
      return fail(AMQP_STATUS_CONNECTION_CLOSED, std::string(what) + ": no reply (missing RPC reply type)");
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
      return fail(reply.library_error, what);
    case AMQP_RESPONSE_SERVER_EXCEPTION: {
      std::string msg = "amqp " + url_.redacted() + ": " + std::string(what) + ": " + server_text(reply);
      // A queue or exchange that does not exist (404 NOT_FOUND) is an answer
      // from a broker that works: the next call may connect again at once, and
      // the caller can tell "no such queue" from a failure. (Read before the
      // connection goes: the decoded reply lives in its memory.)
      const bool not_found = reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD &&
                             static_cast<amqp_channel_close_t*>(reply.reply.decoded)->reply_code == AMQP_NOT_FOUND;
      if (reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD && conn_ != nullptr) {
        amqp_connection_close_ok_t ok{};
        amqp_send_method(conn_, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
      } else if (reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD && conn_ != nullptr) {
        amqp_channel_close_ok_t ok{};
        amqp_send_method(conn_, kChannel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
      }
      // The channel is gone either way; start over with a fresh connection.
      if (conn_ != nullptr) {
        amqp_destroy_connection(conn_);
        conn_ = nullptr;
      }
      if (not_found) return make_error(Errc::not_found, msg);
      pacer_.failed();
      return make_error(Errc::server, msg);
    }
  }
  return make_error(Errc::internal, "amqp: unknown reply type");
}

Status Amqp::tls_socket(amqp_socket_t*& socket) {
  const AmqpTlsConfig& o = url_.tls_options;
  socket = amqp_ssl_socket_new(conn_);
  if (socket == nullptr) return fail(AMQP_STATUS_SSL_ERROR, "creating a TLS socket");
  // Both checks are rabbitmq-c's defaults already; set here so that the
  // setting, not a library default, is what decides.
  amqp_ssl_socket_set_verify_peer(socket, o.verify ? 1 : 0);
  amqp_ssl_socket_set_verify_hostname(socket, o.verify ? 1 : 0);
  // TLS 1.2 at least: rabbitmq-c would accept 1.0.
  if (int st = amqp_ssl_socket_set_ssl_versions(socket, AMQP_TLSv1_2, AMQP_TLSvLATEST); st != AMQP_STATUS_OK) {
    return fail(st, "TLS: setting the protocol versions");
  }
  if (!o.ca_file.empty()) {
    if (amqp_ssl_socket_set_cacert(socket, o.ca_file.c_str()) != AMQP_STATUS_OK) {
      return fail(AMQP_STATUS_SSL_ERROR, "TLS: cannot load amqp.tls.ca_file '" + o.ca_file + "' (PEM certificates)");
    }
  } else {
    // rabbitmq-c trusts nothing by default; without a CA file, the system's
    // store (Debian: /etc/ssl/certs) is what a public CA's certificate chains to.
    auto* ctx = static_cast<SSL_CTX*>(amqp_ssl_socket_get_context(socket));
    if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
      return fail(AMQP_STATUS_SSL_ERROR, "TLS: cannot load the system's trust store");
    }
  }
  if (!o.cert_file.empty()) {
    if (amqp_ssl_socket_set_key(socket, o.cert_file.c_str(), o.key_file.c_str()) != AMQP_STATUS_OK) {
      return fail(AMQP_STATUS_SSL_ERROR, "TLS: cannot load amqp.tls.cert_file '" + o.cert_file +
                                             "' with amqp.tls.key_file '" + o.key_file + "' (PEM, key unencrypted)");
    }
  }
  return {};
}

Status Amqp::connect() {
  close();
  conn_ = amqp_new_connection();
  amqp_socket_t* socket = nullptr;
  if (url_.tls) {
    if (auto st = tls_socket(socket); !st) return st;
  } else {
    socket = amqp_tcp_socket_new(conn_);
    if (socket == nullptr) return fail(AMQP_STATUS_NO_MEMORY, "creating socket");
  }
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout_.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout_.count() % 1000) * 1000);
  if (int st = amqp_socket_open_noblock(socket, url_.host.c_str(), url_.port, &tv); st != AMQP_STATUS_OK) {
    // rabbitmq-c's own words for these ("SSL peer cert verification failed")
    // do not say what to check.
    switch (st) {
      case AMQP_STATUS_SSL_PEER_VERIFY_FAILED:
        return fail(st, "TLS: the broker's certificate is not signed by a trusted CA (" +
                            (url_.tls_options.ca_file.empty() ? std::string("the system's trust store")
                                                              : "amqp.tls.ca_file '" + url_.tls_options.ca_file + "'") +
                            ")");
      case AMQP_STATUS_SSL_HOSTNAME_VERIFY_FAILED:
        return fail(st, "TLS: the broker's certificate does not name host '" + url_.host + "'");
      case AMQP_STATUS_SSL_CONNECTION_FAILED:
        return fail(st, "TLS: the handshake failed (not a TLS port, or the broker refused the client certificate?)");
      default:
        return fail(st, "cannot connect");
    }
  }
  amqp_set_handshake_timeout(conn_, &tv);
  amqp_set_rpc_timeout(conn_, &tv);
  // Announce that we understand connection.blocked: the broker then tells us
  // when a memory or disk alarm stops it reading what we publish, rather than
  // leaving a publisher to find out by a write that never returns.
  // (rabbitmq-c merges these capabilities with its own.)
  amqp_table_entry_t capability{};
  capability.key = amqp_cstring_bytes("connection.blocked");
  capability.value.kind = AMQP_FIELD_KIND_BOOLEAN;
  capability.value.value.boolean = 1;
  amqp_table_entry_t property{};
  property.key = amqp_cstring_bytes("capabilities");
  property.value.kind = AMQP_FIELD_KIND_TABLE;
  property.value.value.table = {1, &capability};
  const amqp_table_t properties{1, &property};
  auto login = amqp_login_with_properties(conn_, url_.vhost.c_str(), 0, 131072, kHeartbeatSeconds, &properties,
                                          AMQP_SASL_METHOD_PLAIN, url_.user.c_str(), url_.password.c_str());
  if (auto st = check(login, "login as '" + url_.user + "' to vhost '" + url_.vhost + "'"); !st) return st;
  amqp_channel_open(conn_, kChannel);
  if (auto st = check(amqp_get_rpc_reply(conn_), "opening channel"); !st) return st;
  return {};
}

Status Amqp::ensure_connected() {
  if (connected()) return {};
  if (!pacer_.ready()) {
    return make_error(Errc::unavailable, "amqp " + url_.redacted() + ": not connected (waiting to reconnect)");
  }
  return connect();
}

Status Amqp::declare_exchange(const std::string& name, const std::string& type, const AmqpTable& args) {
  if (auto st = ensure_connected(); !st) return st;
  AmqpTableBuilder table(args);
  amqp_exchange_declare(conn_, kChannel, bytes_of(name), bytes_of(type), 0, /*durable=*/1, 0, 0, table.table());
  return check(amqp_get_rpc_reply(conn_), "declaring exchange '" + name + "'");
}

Status Amqp::declare_queue(const std::string& name, const AmqpTable& args) {
  if (auto st = ensure_connected(); !st) return st;
  AmqpTableBuilder table(args);
  amqp_queue_declare(conn_, kChannel, bytes_of(name), 0, /*durable=*/1, 0, 0, table.table());
  return check(amqp_get_rpc_reply(conn_), "declaring queue '" + name + "'");
}

Status Amqp::bind_queue(const std::string& queue, const std::string& exchange, const std::string& routing_key) {
  if (auto st = ensure_connected(); !st) return st;
  amqp_queue_bind(conn_, kChannel, bytes_of(queue), bytes_of(exchange), bytes_of(routing_key), amqp_empty_table);
  return check(amqp_get_rpc_reply(conn_), "binding queue '" + queue + "' to '" + exchange + "'");
}

Status Amqp::delete_queue(const std::string& name) {
  if (auto st = ensure_connected(); !st) return st;
  amqp_queue_delete(conn_, kChannel, bytes_of(name), 0, 0);
  return check(amqp_get_rpc_reply(conn_), "deleting queue '" + name + "'");
}

Result<AmqpQueueCounts> Amqp::queue_counts(const std::string& name) {
  if (auto st = ensure_connected(); !st) return st.error();
  auto* ok = amqp_queue_declare(conn_, kChannel, bytes_of(name), /*passive=*/1, 0, 0, 0, amqp_empty_table);
  if (auto st = check(amqp_get_rpc_reply(conn_), "inspecting queue '" + name + "'"); !st) return st.error();
  return AmqpQueueCounts{ok->message_count, ok->consumer_count};
}

Result<uint32_t> Amqp::queue_message_count(const std::string& name) {
  auto counts = queue_counts(name);
  if (!counts) return counts.error();
  return counts->messages;
}

Result<uint32_t> Amqp::purge_queue(const std::string& name) {
  if (auto st = ensure_connected(); !st) return st.error();
  auto* ok = amqp_queue_purge(conn_, kChannel, bytes_of(name));
  if (auto st = check(amqp_get_rpc_reply(conn_), "purging queue '" + name + "'"); !st) return st.error();
  return ok->message_count;
}

Result<std::optional<AmqpGot>> Amqp::get(const std::string& queue, bool no_ack) {
  if (auto st = ensure_connected(); !st) return st.error();
  amqp_basic_get(conn_, kChannel, bytes_of(queue), no_ack ? 1 : 0);
  auto reply = amqp_get_rpc_reply(conn_);
  if (auto st = check(reply, "basic.get from '" + queue + "'"); !st) return st.error();
  if (reply.reply.id != AMQP_BASIC_GET_OK_METHOD) {  // get-empty
    amqp_maybe_release_buffers(conn_);
    return std::optional<AmqpGot>();
  }
  AmqpGot out;
  out.delivery_tag = static_cast<amqp_basic_get_ok_t*>(reply.reply.decoded)->delivery_tag;
  amqp_message_t msg;
  if (auto st = check(amqp_read_message(conn_, kChannel, &msg, 0), "reading a message from '" + queue + "'"); !st) {
    return st.error();
  }
  out.body = to_string(msg.body);
  if (msg.properties._flags & AMQP_BASIC_MESSAGE_ID_FLAG) out.message_id = to_string(msg.properties.message_id);
  if (msg.properties._flags & AMQP_BASIC_CORRELATION_ID_FLAG) {
    out.correlation_id = to_string(msg.properties.correlation_id);
  }
  if (msg.properties._flags & AMQP_BASIC_HEADERS_FLAG) {
    const amqp_table_t& table = msg.properties.headers;
    for (int i = 0; i < table.num_entries; ++i) {
      const std::string key = to_string(table.entries[i].key);
      out.headers[key] = amqp_header_string(table, key);
    }
  }
  amqp_destroy_message(&msg);
  amqp_maybe_release_buffers(conn_);
  return std::optional<AmqpGot>(std::move(out));
}

Status Amqp::confirm_select() {
  if (auto st = ensure_connected(); !st) return st;
  amqp_confirm_select(conn_, kChannel);
  return check(amqp_get_rpc_reply(conn_), "enabling publisher confirms");
}

Status Amqp::qos(uint16_t prefetch) {
  if (auto st = ensure_connected(); !st) return st;
  amqp_basic_qos(conn_, kChannel, 0, prefetch, /*global=*/0);
  return check(amqp_get_rpc_reply(conn_), "setting prefetch");
}

Result<std::string> Amqp::consume(const std::string& queue, const std::string& consumer_tag) {
  if (auto st = ensure_connected(); !st) return st.error();
  auto* ok = amqp_basic_consume(conn_, kChannel, bytes_of(queue), bytes_of(consumer_tag), 0, /*no_ack=*/0, 0,
                                amqp_empty_table);
  if (auto st = check(amqp_get_rpc_reply(conn_), "consuming from '" + queue + "'"); !st) return st.error();
  return to_string(ok->consumer_tag);
}

Status Amqp::cancel(const std::string& consumer_tag) {
  if (!connected()) return {};
  amqp_basic_cancel(conn_, kChannel, bytes_of(consumer_tag));
  return check(amqp_get_rpc_reply(conn_), "cancelling consumer");
}

Status Amqp::publish(const std::string& exchange, const std::string& routing_key, std::string_view body,
                     const AmqpMessageProps& props, bool mandatory) {
  if (auto st = ensure_connected(); !st) return st;
  amqp_basic_properties_t p{};
  p._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
  p.content_type = bytes_of(props.content_type);
  p.delivery_mode = props.persistent ? 2 : 1;
  if (!props.message_id.empty()) {
    p._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
    p.message_id = bytes_of(props.message_id);
  }
  if (!props.correlation_id.empty()) {
    p._flags |= AMQP_BASIC_CORRELATION_ID_FLAG;
    p.correlation_id = bytes_of(props.correlation_id);
  }
  if (!props.reply_to.empty()) {
    p._flags |= AMQP_BASIC_REPLY_TO_FLAG;
    p.reply_to = bytes_of(props.reply_to);
  }
  if (!props.user_id.empty()) {
    p._flags |= AMQP_BASIC_USER_ID_FLAG;
    p.user_id = bytes_of(props.user_id);
  }
  if (props.priority) {
    p._flags |= AMQP_BASIC_PRIORITY_FLAG;
    p.priority = *props.priority;
  }
  AmqpTableBuilder headers(props.headers);
  if (!props.headers.empty()) {
    p._flags |= AMQP_BASIC_HEADERS_FLAG;
    p.headers = headers.table();
  }
  int st = amqp_basic_publish(conn_, kChannel, bytes_of(exchange), bytes_of(routing_key), mandatory ? 1 : 0, 0, &p,
                              bytes_of(body));
  if (st != AMQP_STATUS_OK) return fail(st, "publishing to '" + exchange + "'");
  return {};
}

std::optional<Error> Amqp::closed_by(const amqp_frame_t& frame, std::string_view what) {
  if (frame.frame_type != AMQP_FRAME_METHOD) return std::nullopt;
  const amqp_method_number_t id = frame.payload.method.id;
  if (id == AMQP_BASIC_CANCEL_METHOD) {
    close();
    return Error{Errc::unavailable, std::string(what) + ": the broker cancelled the consumer (queue deleted?)"};
  }
  if (id != AMQP_CHANNEL_CLOSE_METHOD && id != AMQP_CONNECTION_CLOSE_METHOD) return std::nullopt;
  amqp_rpc_reply_t reply{};
  reply.reply_type = AMQP_RESPONSE_SERVER_EXCEPTION;
  reply.reply = frame.payload.method;
  return check(reply, what).error();
}

std::optional<AmqpBlocked> Amqp::blocked_by(const amqp_frame_t& frame) {
  if (frame.frame_type != AMQP_FRAME_METHOD) return std::nullopt;
  if (frame.payload.method.id == AMQP_CONNECTION_BLOCKED_METHOD) {
    const auto* m = static_cast<const amqp_connection_blocked_t*>(frame.payload.method.decoded);
    return AmqpBlocked{true, to_string(m->reason)};
  }
  if (frame.payload.method.id == AMQP_CONNECTION_UNBLOCKED_METHOD) return AmqpBlocked{false, ""};
  return std::nullopt;
}

Status Amqp::ack(uint64_t delivery_tag, bool multiple) {
  if (!connected()) return make_error(Errc::unavailable, "amqp: not connected; the delivery will be redelivered");
  if (int st = amqp_basic_ack(conn_, kChannel, delivery_tag, multiple ? 1 : 0); st != AMQP_STATUS_OK) {
    return fail(st, "acking");
  }
  return {};
}

Status Amqp::nack(uint64_t delivery_tag, bool requeue, bool multiple) {
  if (!connected()) return make_error(Errc::unavailable, "amqp: not connected; the delivery will be redelivered");
  if (int st = amqp_basic_nack(conn_, kChannel, delivery_tag, multiple ? 1 : 0, requeue ? 1 : 0);
      st != AMQP_STATUS_OK) {
    return fail(st, "nacking");
  }
  return {};
}

}  // namespace ripen
