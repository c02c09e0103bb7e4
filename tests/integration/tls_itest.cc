// Transport security against real servers: amqps:// to RabbitMQ (through an
// stunnel that terminates TLS in front of the test broker, so the shared test
// servers keep running unchanged; a broker with native TLS looks the same to the
// client), Redis over TLS through an stunnel client in front of a TLS-only
// redis-server (Debian's hiredis 0.14 has no TLS: this is the documented way),
// and Redis ACL users. Certificates are made with `openssl` in a temp dir for
// each test; stunnel (Debian's stunnel4) and openssl must be installed.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "ripen/amqp.h"
#include "ripen/producer.h"
#include "ripen/publisher.h"
#include "ripen/redis.h"
#include "testing.h"

namespace ripen::testing {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::Not;

// Whether something accepts TCP connections on 127.0.0.1:port.
bool port_open(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return ok;
}

// A temp dir with a throwaway CA, a server certificate for "localhost" (and
// 127.0.0.1) and a client certificate, both signed by it, and a second CA that
// signed neither. Removed on destruction.
class Pki {
 public:
  Pki() {
    dir_ = (std::filesystem::temp_directory_path() / "ripen-tests" / unique_namespace("pki")).string();
    std::filesystem::create_directories(dir_);
    openssl_ = find_program("openssl");
    if (openssl_.empty()) throw std::runtime_error("openssl not found in PATH");
    make_ca("ca");
    make_ca("other-ca");
    make_signed("server", "localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
    make_signed("client", "ripen-client", "extendedKeyUsage=clientAuth\n");
  }
  ~Pki() {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  Pki(const Pki&) = delete;
  Pki& operator=(const Pki&) = delete;

  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  const std::string& dir() const { return dir_; }

 private:
  void openssl(const std::vector<std::string>& args) {
    CommandResult r = run_command(openssl_, args);
    if (r.code != 0) throw std::runtime_error("openssl " + args.at(0) + " failed: " + r.err);
  }
  // EC keys: generated in milliseconds, where RSA takes a good part of a second.
  void make_ca(const std::string& name) {
    openssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
             path(name + ".key"), "-out", path(name + ".pem"), "-days", "2", "-subj", "/CN=ripen test " + name});
  }
  void make_signed(const std::string& name, const std::string& cn, const std::string& extensions) {
    openssl({"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
             path(name + ".key"), "-out", path(name + ".csr"), "-subj", "/CN=" + cn});
    std::ofstream(path(name + ".ext")) << extensions;
    openssl({"x509", "-req", "-in", path(name + ".csr"), "-CA", path("ca.pem"), "-CAkey", path("ca.key"),
             "-CAcreateserial", "-out", path(name + ".pem"), "-days", "2", "-extfile", path(name + ".ext")});
  }

  std::string dir_;
  std::string openssl_;
};

// stunnel in the foreground with `services` (stunnel.conf sections), waiting
// until every port in `ports` accepts connections. Killed on destruction.
class Stunnel {
 public:
  Stunnel(const Pki& pki, const std::string& services, const std::vector<int>& ports) {
    const std::string program = find_program("stunnel4").empty() ? find_program("stunnel") : find_program("stunnel4");
    if (program.empty()) throw std::runtime_error("stunnel not found in PATH (Debian package stunnel4)");
    const std::string conf = pki.path(unique_namespace("stunnel") + ".conf");
    std::ofstream(conf) << "foreground = yes\npid =\ndebug = notice\n" << services;
    child_ = std::make_unique<Child>(program, std::vector<std::string>{conf});
    const bool up = wait_until(
        [&] {
          for (int port : ports) {
            if (!port_open(port)) return false;
          }
          return true;
        },
        10s, 20ms);
    if (!up) throw std::runtime_error("stunnel did not listen within 10 s:\n" + child_->output());
  }
  std::string output() const { return child_->output(); }

 private:
  std::unique_ptr<Child> child_;
};

// ---- amqps:// to RabbitMQ --------------------------------------------------------

class AmqpTls : public NamespaceTest {
 protected:
  void SetUp() override {
    NamespaceTest::SetUp();
    broker_ = parse_amqp_url(config_.amqp_url).value();
    tls_port_ = free_port();
    mtls_port_ = free_port();
    const std::string upstream = "connect = " + broker_.host + ":" + std::to_string(broker_.port) + "\n";
    const std::string server_cert = "cert = " + pki_.path("server.pem") + "\nkey = " + pki_.path("server.key") + "\n";
    stunnel_ = std::make_unique<Stunnel>(
        pki_,
        "[amqps]\naccept = 127.0.0.1:" + std::to_string(tls_port_) + "\n" + upstream + server_cert +
            // The same broker, for clients that show a certificate signed by the CA.
            "[amqps-mtls]\naccept = 127.0.0.1:" + std::to_string(mtls_port_) + "\n" + upstream + server_cert +
            "CAfile = " + pki_.path("ca.pem") + "\nverifyChain = yes\nrequireCert = yes\n",
        std::vector<int>{tls_port_, mtls_port_});
  }

  // config_ pointed at the TLS port `port` by host name (what the certificate names).
  Config tls_config(int port) const {
    Config c = config_;
    const std::string vhost = broker_.vhost == "/" ? "%2f" : broker_.vhost;
    c.amqp_url =
        "amqps://" + broker_.user + ":" + broker_.password + "@localhost:" + std::to_string(port) + "/" + vhost;
    c.amqp_tls.ca_file = pki_.path("ca.pem");
    return c;
  }

  // A message published over `amqp` into a fresh queue comes back through it.
  void round_trip(Amqp& amqp) {
    const std::string queue = config_.ns + ".tls";
    queues_to_delete_.push_back(queue);
    ASSERT_TRUE(amqp.declare_queue(queue).ok());
    AmqpMessageProps props;
    props.message_id = "over-tls";
    ASSERT_TRUE(amqp.publish("", queue, R"({"secret":"in transit"})", props, /*mandatory=*/true).ok());
    std::optional<AmqpGot> got;
    ASSERT_TRUE(wait_until(
        [&] {
          auto r = amqp.get(queue, /*no_ack=*/true);
          if (!r) return false;
          got = *r;
          return got.has_value();
        },
        5s));
    EXPECT_EQ(got->body, R"({"secret":"in transit"})");
    EXPECT_EQ(got->message_id, "over-tls");
  }

  void TearDown() override {
    if (auto amqp = connect_amqp(config_)) {
      for (const auto& q : queues_to_delete_) (void)amqp->delete_queue(q);
    }
    stunnel_.reset();
    NamespaceTest::TearDown();
  }

  Pki pki_;
  AmqpUrl broker_;
  int tls_port_ = 0;
  int mtls_port_ = 0;
  std::unique_ptr<Stunnel> stunnel_;
  std::vector<std::string> queues_to_delete_;
};

TEST_F(AmqpTls, VerifiedConnectionPublishesAndGets) {
  const AmqpUrl url = amqp_url_of(tls_config(tls_port_));
  ASSERT_TRUE(url.tls);
  Amqp amqp(url, 5s);
  Status st = amqp.connect();
  ASSERT_TRUE(st.ok()) << st.error().describe() << "\nstunnel:\n" << stunnel_->output();
  round_trip(amqp);
}

TEST_F(AmqpTls, PublisherConfirmsOverTls) {
  // The dispatcher's and the worker's publisher: confirms come back through TLS.
  ConfirmedPublisher publisher(amqp_url_of(tls_config(tls_port_)));
  Amqp amqp(amqp_url_of(tls_config(tls_port_)), 5s);
  const std::string queue = config_.ns + ".tls-confirm";
  queues_to_delete_.push_back(queue);
  ASSERT_TRUE(amqp.declare_queue(queue).ok());
  AmqpMessageProps props;
  auto ticket = publisher.publish("", queue, "{}", props);
  ASSERT_TRUE(ticket.ok()) << ticket.error().describe();
  std::vector<ConfirmedPublisher::Settled> settled;
  ASSERT_TRUE(wait_until(
      [&] {
        publisher.poll();
        for (const auto& s : publisher.take_settled()) settled.push_back(s);
        return !settled.empty();
      },
      5s));
  EXPECT_EQ(settled.at(0).ticket, *ticket);
  EXPECT_TRUE(settled.at(0).confirmed);
  EXPECT_TRUE(wait_until([&] { return message_count(amqp, queue) == 1; }, 5s));
}

TEST_F(AmqpTls, WrongCaIsRefusedWithAClearError) {
  Config c = tls_config(tls_port_);
  c.amqp_tls.ca_file = pki_.path("other-ca.pem");
  Amqp amqp(amqp_url_of(c), 5s);
  Status st = amqp.connect();
  ASSERT_FALSE(st.ok()) << "a broker whose certificate the CA did not sign must be refused";
  EXPECT_THAT(st.error().message, HasSubstr("the broker's certificate is not signed by a trusted CA"));
  EXPECT_THAT(st.error().message, HasSubstr("other-ca.pem"));
  EXPECT_THAT(st.error().message, Not(HasSubstr(broker_.password + "@"))) << "the URL is shown redacted";
  EXPECT_FALSE(amqp.connected());
}

TEST_F(AmqpTls, SystemTrustStoreDoesNotTrustAPrivateCa) {
  // No ca_file: the system's store, which has never heard of the test CA.
  Config c = tls_config(tls_port_);
  c.amqp_tls.ca_file.clear();
  Amqp amqp(amqp_url_of(c), 5s);
  Status st = amqp.connect();
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(st.error().message, HasSubstr("the system's trust store"));
}

TEST_F(AmqpTls, HostNameMustMatchTheCertificate) {
  // 127.0.0.1 is in the certificate only as an IP address entry, which
  // rabbitmq-c does not match: the name checked is a DNS name.
  Config c = tls_config(tls_port_);
  c.amqp_url = "amqps://" + broker_.user + ":" + broker_.password + "@127.0.0.1:" + std::to_string(tls_port_) + "/%2f";
  {
    Amqp amqp(amqp_url_of(c), 5s);
    Status st = amqp.connect();
    ASSERT_FALSE(st.ok());
    EXPECT_THAT(st.error().message, HasSubstr("does not name host '127.0.0.1'"));
  }
  // verify = false turns both checks off (for a test setup only).
  c.amqp_tls.verify = false;
  c.amqp_tls.ca_file = pki_.path("other-ca.pem");
  Amqp amqp(amqp_url_of(c), 5s);
  Status st = amqp.connect();
  EXPECT_TRUE(st.ok()) << st.error().describe();
}

TEST_F(AmqpTls, PlainClientOnTheTlsPortFails) {
  Config c = config_;
  c.amqp_url = "amqp://" + broker_.user + ":" + broker_.password + "@localhost:" + std::to_string(tls_port_) + "/%2f";
  Amqp amqp(amqp_url_of(c), 2s);
  EXPECT_FALSE(amqp.connect().ok());
}

TEST_F(AmqpTls, ClientCertificateWhenTheBrokerAsksForOne) {
  {
    Amqp without(amqp_url_of(tls_config(mtls_port_)), 5s);
    Status st = without.connect();
    ASSERT_FALSE(st.ok()) << "the mTLS port must refuse a client without a certificate";
  }
  Config c = tls_config(mtls_port_);
  c.amqp_tls.cert_file = pki_.path("client.pem");
  c.amqp_tls.key_file = pki_.path("client.key");
  Amqp amqp(amqp_url_of(c), 5s);
  Status st = amqp.connect();
  ASSERT_TRUE(st.ok()) << st.error().describe() << "\nstunnel:\n" << stunnel_->output();
  round_trip(amqp);
}

TEST_F(AmqpTls, UnreadableCaFileIsNamed) {
  Config c = tls_config(tls_port_);
  c.amqp_tls.ca_file = pki_.path("no-such-ca.pem");
  Amqp amqp(amqp_url_of(c), 5s);
  Status st = amqp.connect();
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(st.error().message, HasSubstr("cannot load amqp.tls.ca_file '" + pki_.path("no-such-ca.pem") + "'"));
}

// ---- Redis over TLS through an stunnel client ------------------------------------

TEST(RedisTls, EnqueueThroughAnStunnelClient) {
  Pki pki;
  const int tls_port = free_port();
  const std::string redis_dir = pki.path("redis");
  std::filesystem::create_directories(redis_dir);
  // A TLS-only Redis (--port 0: no plain port), as a production one would be.
  Child redis(find_program("redis-server"), {"--port",
                                             "0",
                                             "--tls-port",
                                             std::to_string(tls_port),
                                             "--bind",
                                             "127.0.0.1",
                                             "--tls-cert-file",
                                             pki.path("server.pem"),
                                             "--tls-key-file",
                                             pki.path("server.key"),
                                             "--tls-ca-cert-file",
                                             pki.path("ca.pem"),
                                             "--tls-auth-clients",
                                             "no",
                                             "--save",
                                             "",
                                             "--appendonly",
                                             "no",
                                             "--dir",
                                             redis_dir});
  ASSERT_TRUE(wait_until([&] { return port_open(tls_port); }, 10s)) << redis.output();

  {
    // Plain RESP on the TLS port gets nowhere: the tunnel is what makes it work.
    RedisUrl direct;
    direct.port = tls_port;
    Redis plain(direct, 1s);
    EXPECT_FALSE(plain.command({"PING"}).ok());
  }

  // ripen -> 127.0.0.1:local (stunnel client) -> TLS, checked against the CA
  // and the name "localhost" -> Redis.
  const int local = free_port();
  Stunnel tunnel(pki,
                 "[redis]\nclient = yes\naccept = 127.0.0.1:" + std::to_string(local) +
                     "\nconnect = 127.0.0.1:" + std::to_string(tls_port) + "\nCAfile = " + pki.path("ca.pem") +
                     "\nverifyChain = yes\ncheckHost = localhost\n",
                 {local});

  Config config = test_config(unique_namespace("redis-tls"));
  config.redis_url = "redis://127.0.0.1:" + std::to_string(local) + "/0";
  Producer producer(config);
  auto enqueued = producer.enqueue(make_task("over-tls", {{"n", 1}}));
  ASSERT_TRUE(enqueued.ok()) << enqueued.error().describe() << "\nstunnel:\n" << tunnel.output();
  auto record = producer.get(enqueued->id);
  ASSERT_TRUE(record.ok()) << record.error().describe();
  EXPECT_EQ(record->state, "scheduled");
  Redis redis_client(redis_url_of(config), 5s);
  EXPECT_EQ(due_count(redis_client, Keys(config.ns, config.shards)), 1);

  // A tunnel that does not trust the server's CA passes nothing through.
  const int untrusting = free_port();
  Stunnel wrong(pki,
                "[redis]\nclient = yes\naccept = 127.0.0.1:" + std::to_string(untrusting) +
                    "\nconnect = 127.0.0.1:" + std::to_string(tls_port) + "\nCAfile = " + pki.path("other-ca.pem") +
                    "\nverifyChain = yes\ncheckHost = localhost\n",
                {untrusting});
  RedisUrl through_wrong;
  through_wrong.port = untrusting;
  Redis refused(through_wrong, 2s);
  EXPECT_FALSE(refused.command({"PING"}).ok());
}

// ---- Redis ACL users ------------------------------------------------------------

// An ACL user in the test Redis for this test alone, deleted at the end.
class RedisAcl : public NamespaceTest {
 protected:
  void SetUp() override {
    NamespaceTest::SetUp();
    admin_ = connect_redis(config_);
    user_ = config_.ns + "-user";
    // '@' and ':' in the password: the URL must percent-encode them. The
    // user may touch its namespace's keys and channels only, as the README
    // advises for production.
    auto r = admin_->command(
        {"ACL", "SETUSER", user_, "on", ">" + kPassword, "~" + config_.ns + ":*", "&" + config_.ns + ":*", "+@all"});
    ASSERT_TRUE(r.ok()) << r.error().describe();
    server_ = parse_redis_url(config_.redis_url).value();
  }
  void TearDown() override {
    if (admin_) (void)admin_->command({"ACL", "DELUSER", user_});
    NamespaceTest::TearDown();
  }
  std::string url(const std::string& encoded_password) const {
    return "redis://" + user_ + ":" + encoded_password + "@" + server_.host + ":" + std::to_string(server_.port) + "/" +
           std::to_string(server_.db);
  }

  const std::string kPassword = "p@ss:w0rd";
  std::unique_ptr<Redis> admin_;
  std::string user_;
  RedisUrl server_;
};

TEST_F(RedisAcl, UserAndPercentEncodedPasswordLogIn) {
  Redis redis(parse_redis_url(url("p%40ss%3Aw0rd")).value(), 5s);
  auto who = redis.command({"ACL", "WHOAMI"});
  ASSERT_TRUE(who.ok()) << who.error().describe();
  EXPECT_EQ(who->str(), user_) << "AUTH must name the user, not only send the password";
}

TEST_F(RedisAcl, WrongPasswordIsAClearError) {
  Redis redis(parse_redis_url(url("not-it")).value(), 5s);
  Status st = redis.connect();
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(st.error().message, HasSubstr("AUTH refused"));
  EXPECT_THAT(st.error().message, HasSubstr("WRONGPASS"));
  EXPECT_THAT(st.error().message, HasSubstr(user_ + ":***@")) << "the user is named, the password is not";
  EXPECT_THAT(st.error().message, Not(HasSubstr("not-it")));
}

TEST_F(RedisAcl, PasswordFromAFileOverridesTheUrls) {
  const std::string file = (std::filesystem::temp_directory_path() / (config_.ns + ".pw")).string();
  std::ofstream(file) << kPassword << "\n";
  Config c = config_;
  c.redis_url = url("wrong-in-url");
  c.redis_password_file = file;
  read_password_files(c);
  std::filesystem::remove(file);
  Redis redis(redis_url_of(c), 5s);
  auto who = redis.command({"ACL", "WHOAMI"});
  ASSERT_TRUE(who.ok()) << who.error().describe();
  EXPECT_EQ(who->str(), user_);
}

TEST_F(RedisAcl, ProducerEnqueuesAsTheUser) {
  Config c = config_;
  c.redis_url = url("p%40ss%3Aw0rd");
  Producer producer(c);
  auto enqueued = producer.enqueue(make_task("acl", {{"n", 1}}));
  ASSERT_TRUE(enqueued.ok()) << enqueued.error().describe();
  auto record = producer.get(enqueued->id);
  ASSERT_TRUE(record.ok()) << record.error().describe();
  EXPECT_EQ(record->state, "scheduled");
}

}  // namespace
}  // namespace ripen::testing
