// Which addresses the http handler's connection fence refuses, in every form
// an address can take (IPv4, IPv6, IPv4-mapped and the other IPv6 forms that
// carry an IPv4 address), and the networks an operator may allow.
#include "ripen/net_address.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <gtest/gtest.h>

#include <cstring>
#include <string>

namespace ripen {
namespace {

// The address as curl hands it to the fence: a sockaddr of its family.
IpBytes ip(const std::string& text) {
  sockaddr_storage ss{};
  if (auto* v4 = reinterpret_cast<sockaddr_in*>(&ss); inet_pton(AF_INET, text.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
  } else {
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
    EXPECT_EQ(inet_pton(AF_INET6, text.c_str(), &v6->sin6_addr), 1) << text;
    v6->sin6_family = AF_INET6;
  }
  return *ip_of(reinterpret_cast<const sockaddr*>(&ss));
}

std::string kind(const std::string& text) {
  const char* k = special_address_kind(ip(text));
  return k == nullptr ? "public" : k;
}

TEST(SpecialAddress, Ipv4RangesAtTheirEdges) {
  EXPECT_EQ(kind("127.0.0.1"), "loopback");
  EXPECT_EQ(kind("127.255.255.255"), "loopback");
  EXPECT_EQ(kind("10.0.0.0"), "private");
  EXPECT_EQ(kind("10.255.255.255"), "private");
  EXPECT_EQ(kind("11.0.0.0"), "public");
  EXPECT_EQ(kind("172.15.255.255"), "public");
  EXPECT_EQ(kind("172.16.0.0"), "private");
  EXPECT_EQ(kind("172.31.255.255"), "private");
  EXPECT_EQ(kind("172.32.0.0"), "public");
  EXPECT_EQ(kind("192.168.0.1"), "private");
  EXPECT_EQ(kind("192.169.0.1"), "public");
  EXPECT_EQ(kind("169.254.169.254"), "link-local") << "the cloud metadata service";
  EXPECT_EQ(kind("169.253.255.255"), "public");
  EXPECT_EQ(kind("100.63.255.255"), "public");
  EXPECT_EQ(kind("100.64.0.0"), "carrier-grade NAT");
  EXPECT_EQ(kind("100.127.255.255"), "carrier-grade NAT");
  EXPECT_EQ(kind("100.128.0.0"), "public");
  EXPECT_EQ(kind("0.0.0.0"), "unspecified");
  EXPECT_EQ(kind("0.1.2.3"), "reserved");
  EXPECT_EQ(kind("224.0.0.1"), "multicast");
  EXPECT_EQ(kind("239.255.255.255"), "multicast");
  EXPECT_EQ(kind("240.0.0.1"), "reserved");
  EXPECT_EQ(kind("255.255.255.255"), "reserved");
  EXPECT_EQ(kind("223.255.255.255"), "public");
  EXPECT_EQ(kind("93.184.216.34"), "public");
}

TEST(SpecialAddress, Ipv6Ranges) {
  EXPECT_EQ(kind("::1"), "loopback");
  EXPECT_EQ(kind("::"), "unspecified");
  EXPECT_EQ(kind("fe80::1"), "link-local");
  EXPECT_EQ(kind("febf:ffff::1"), "link-local");
  EXPECT_EQ(kind("fec0::1"), "site-local");
  EXPECT_EQ(kind("fc00::1"), "unique local");
  EXPECT_EQ(kind("fdff:ffff::1"), "unique local");
  EXPECT_EQ(kind("fe00::1"), "public");
  EXPECT_EQ(kind("fbff::1"), "public");
  EXPECT_EQ(kind("ff02::1"), "multicast");
  EXPECT_EQ(kind("2606:4700::1111"), "public");
}

TEST(SpecialAddress, Ipv6FormsCarryingAnIpv4AddressAreJudgedByIt) {
  EXPECT_EQ(kind("::ffff:127.0.0.1"), "loopback") << "IPv4-mapped";
  EXPECT_EQ(kind("::ffff:169.254.169.254"), "link-local");
  EXPECT_EQ(kind("::ffff:10.1.2.3"), "private");
  EXPECT_EQ(kind("::ffff:8.8.8.8"), "public");
  EXPECT_EQ(kind("::127.0.0.1"), "loopback") << "IPv4-compatible";
  EXPECT_EQ(kind("64:ff9b::10.0.0.1"), "private") << "NAT64";
  EXPECT_EQ(kind("64:ff9b::8.8.8.8"), "public");
  EXPECT_EQ(kind("2002:7f00:1::"), "loopback") << "6to4 of 127.0.0.1";
  EXPECT_EQ(kind("2002:0808:0808::"), "public");
  EXPECT_EQ(ip_text(ip("::ffff:10.1.2.3")), "10.1.2.3");
  EXPECT_EQ(ip_text(ip("10.1.2.3")), "10.1.2.3");
  EXPECT_EQ(ip_text(ip("fe80::1")), "fe80::1");
}

TEST(IpNetwork, Ipv4NetworkHoldsItsAddressesAndTheirMappedForms) {
  auto net = parse_ip_network("10.1.0.0/16");
  ASSERT_TRUE(net) << net.error().message;
  EXPECT_TRUE(net->contains(ip("10.1.0.0")));
  EXPECT_TRUE(net->contains(ip("10.1.255.255")));
  EXPECT_TRUE(net->contains(ip("::ffff:10.1.2.3")));
  EXPECT_FALSE(net->contains(ip("10.2.0.0")));
  EXPECT_FALSE(net->contains(ip("10.0.255.255")));
  auto odd = parse_ip_network("172.16.0.0/12");
  ASSERT_TRUE(odd);
  EXPECT_TRUE(odd->contains(ip("172.31.255.255")));
  EXPECT_FALSE(odd->contains(ip("172.32.0.0")));
  auto host = parse_ip_network("127.0.0.1");
  ASSERT_TRUE(host);
  EXPECT_TRUE(host->contains(ip("127.0.0.1")));
  EXPECT_FALSE(host->contains(ip("127.0.0.2")));
  auto all = parse_ip_network("0.0.0.0/0");
  ASSERT_TRUE(all);
  EXPECT_TRUE(all->contains(ip("255.1.2.3")));
  EXPECT_FALSE(all->contains(ip("::1"))) << "an IPv4 network holds no IPv6 address";
}

TEST(IpNetwork, Ipv6Networks) {
  auto net = parse_ip_network("fd00:1::/32");
  ASSERT_TRUE(net) << net.error().message;
  EXPECT_TRUE(net->contains(ip("fd00:1::5")));
  EXPECT_FALSE(net->contains(ip("fd00:2::5")));
  auto one = parse_ip_network("::1/128");
  ASSERT_TRUE(one);
  EXPECT_TRUE(one->contains(ip("::1")));
  EXPECT_FALSE(one->contains(ip("127.0.0.1")));
}

TEST(IpNetwork, BadNetworksNameWhatIsWrong) {
  EXPECT_NE(parse_ip_network("10.0.0.1/8").error().message.find("bits are set past the prefix length"),
            std::string::npos);
  EXPECT_NE(parse_ip_network("10.0.0.0/33").error().message.find("at most 32"), std::string::npos);
  EXPECT_NE(parse_ip_network("::/129").error().message.find("at most 128"), std::string::npos);
  EXPECT_NE(parse_ip_network("10.0.0.0/").error().message.find("must be a number"), std::string::npos);
  EXPECT_NE(parse_ip_network("10.0.0.0/x").error().message.find("must be a number"), std::string::npos);
  EXPECT_NE(parse_ip_network("example.com").error().message.find("not an IPv4 or IPv6 address"), std::string::npos);
  EXPECT_LT(parse_ip_network(std::string(5000, '1')).error().message.size(), 200u) << "quoted cut short";
}

}  // namespace
}  // namespace ripen
