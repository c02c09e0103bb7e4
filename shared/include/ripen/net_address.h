// IP addresses as the http handler's connection fence sees them (README,
// "The http handler"): which addresses are not on the public internet, and
// networks (CIDRs) an operator allows anyway. Pure functions, no I/O.
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "ripen/result.h"

namespace ripen {

// An IPv4 or IPv6 address, held as 16 bytes: IPv4 as its IPv4-mapped IPv6
// form (::ffff:a.b.c.d), so one rule set serves both families and a mapped
// address is judged as the IPv4 address it carries.
using IpBytes = std::array<uint8_t, 16>;

// Null unless `addr` is an AF_INET or AF_INET6 address.
std::optional<IpBytes> ip_of(const sockaddr* addr);
// The address as text: "10.1.2.3" for IPv4 (mapped or not), "fe80::1" else.
std::string ip_text(const IpBytes& ip);

// Why `ip` is not a public unicast address, or nullptr when it is: "loopback",
// "link-local", "private", "carrier-grade NAT", "unique local", "multicast",
// "unspecified", "reserved" (IPv4 0/8, 240/4, broadcast) or "site-local".
// IPv6 forms that carry an IPv4 address (IPv4-mapped ::ffff:0:0/96,
// IPv4-compatible ::/96, NAT64 64:ff9b::/96, 6to4 2002::/16) are judged by
// the IPv4 address they carry.
const char* special_address_kind(const IpBytes& ip);

// A network: "10.0.0.0/8", "fd00::/8", or one address ("127.0.0.1" = /32,
// "::1" = /128). An IPv4 network also holds the IPv4-mapped forms of its
// addresses. Bits past the prefix must be zero ("10.0.0.1/8" is refused).
struct IpNetwork {
  IpBytes base{};
  int bits = 128;  // of the 16-byte form: an IPv4 /8 is 104
  bool contains(const IpBytes& ip) const;
};
// Errc::invalid naming what is wrong (the text is quoted cut short).
Result<IpNetwork> parse_ip_network(std::string_view text);

}  // namespace ripen
