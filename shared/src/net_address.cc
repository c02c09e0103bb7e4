#include "ripen/net_address.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>
#include <initializer_list>
#include <optional>

namespace ripen {
namespace {

constexpr IpBytes kMappedPrefix = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

bool starts(const IpBytes& ip, std::initializer_list<uint8_t> head) {
  size_t i = 0;
  for (uint8_t b : head) {
    if (ip[i++] != b) return false;
  }
  return true;
}

bool zero(const IpBytes& ip, size_t from, size_t to) {
  for (size_t i = from; i < to; ++i) {
    if (ip[i] != 0) return false;
  }
  return true;
}

const char* ipv4_kind(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  if (a == 0) return b == 0 && c == 0 && d == 0 ? "unspecified" : "reserved";  // 0/8: "this network"
  if (a == 127) return "loopback";
  if (a == 10 || (a == 172 && (b & 0xf0) == 16) || (a == 192 && b == 168)) return "private";
  if (a == 169 && b == 254) return "link-local";
  if (a == 100 && (b & 0xc0) == 64) return "carrier-grade NAT";
  if ((a & 0xf0) == 224) return "multicast";
  if ((a & 0xf0) == 240) return "reserved";  // 240/4, with the broadcast address
  return nullptr;
}

std::string cut(std::string_view text) {
  return text.size() <= 64 ? std::string(text) : std::string(text.substr(0, 64)) + "...";
}

}  // namespace

std::optional<IpBytes> ip_of(const sockaddr* addr) {
  if (addr == nullptr) return std::nullopt;
  IpBytes ip{};
  if (addr->sa_family == AF_INET) {
    ip = kMappedPrefix;
    std::memcpy(ip.data() + 12, &reinterpret_cast<const sockaddr_in*>(addr)->sin_addr, 4);
    return ip;
  }
  if (addr->sa_family == AF_INET6) {
    std::memcpy(ip.data(), &reinterpret_cast<const sockaddr_in6*>(addr)->sin6_addr, 16);
    return ip;
  }
  return std::nullopt;
}

std::string ip_text(const IpBytes& ip) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (std::equal(kMappedPrefix.begin(), kMappedPrefix.begin() + 12, ip.begin())) {
    inet_ntop(AF_INET, ip.data() + 12, buf, sizeof buf);
  } else {
    inet_ntop(AF_INET6, ip.data(), buf, sizeof buf);
  }
  return buf;
}

const char* special_address_kind(const IpBytes& ip) {
  // Forms that carry an IPv4 address: the connection reaches (or is
  // translated to) that address, so it is what counts.
  if (starts(ip, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff}) ||     // IPv4-mapped
      starts(ip, {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0})) {  // NAT64
    return ipv4_kind(ip[12], ip[13], ip[14], ip[15]);
  }
  if (zero(ip, 0, 12)) {
    if (zero(ip, 12, 15) && ip[15] == 0) return "unspecified";
    if (zero(ip, 12, 15) && ip[15] == 1) return "loopback";
    return ipv4_kind(ip[12], ip[13], ip[14], ip[15]);  // IPv4-compatible (deprecated)
  }
  if (ip[0] == 0x20 && ip[1] == 0x02) {  // 6to4: 2002:aabb:ccdd::/48
    if (const char* kind = ipv4_kind(ip[2], ip[3], ip[4], ip[5])) return kind;
  }
  if (ip[0] == 0xff) return "multicast";
  if (ip[0] == 0xfe && (ip[1] & 0xc0) == 0x80) return "link-local";
  if (ip[0] == 0xfe && (ip[1] & 0xc0) == 0xc0) return "site-local";
  if ((ip[0] & 0xfe) == 0xfc) return "unique local";
  return nullptr;
}

bool IpNetwork::contains(const IpBytes& ip) const {
  const int whole = bits / 8;
  if (!std::equal(base.begin(), base.begin() + whole, ip.begin())) return false;
  const int rest = bits % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (ip[whole] & mask) == (base[whole] & mask);
}

Result<IpNetwork> parse_ip_network(std::string_view text) {
  const auto bad = [&](const std::string& why) {
    return make_error(Errc::invalid, "network '" + cut(text) + "': " + why);
  };
  const size_t slash = text.find('/');
  const std::string addr(text.substr(0, slash));
  IpNetwork n;
  int max_bits = 128;
  if (in_addr v4{}; inet_pton(AF_INET, addr.c_str(), &v4) == 1) {
    n.base = kMappedPrefix;
    std::memcpy(n.base.data() + 12, &v4, 4);
    max_bits = 32;
  } else if (in6_addr v6{}; inet_pton(AF_INET6, addr.c_str(), &v6) == 1) {
    std::memcpy(n.base.data(), &v6, 16);
  } else {
    return bad("not an IPv4 or IPv6 address (expected e.g. \"10.0.0.0/8\" or \"fd00::/8\")");
  }
  int bits = max_bits;
  if (slash != std::string_view::npos) {
    const std::string_view len = text.substr(slash + 1);
    if (len.empty() || len.size() > 3 || len.find_first_not_of("0123456789") != std::string_view::npos) {
      return bad("the prefix length must be a number");
    }
    bits = std::stoi(std::string(len));
    if (bits > max_bits) return bad("the prefix length must be at most " + std::to_string(max_bits));
  }
  n.bits = bits + (128 - max_bits);
  for (int i = n.bits; i < 128; ++i) {
    if ((n.base[static_cast<size_t>(i / 8)] >> (7 - i % 8)) & 1) return bad("bits are set past the prefix length");
  }
  return n;
}

}  // namespace ripen
