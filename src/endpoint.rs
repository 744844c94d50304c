//! A socket's identity: protocol + IP address + port.
//!
//! The seed defines a socket (소켓) by three things: the protocol (프로토콜) that
//! says how the two ends talk, the IP address (IP 주소) that names the host, and
//! the port (포트) that names one process on that host. [`Endpoint`] is exactly
//! that triple, written the way people write it:
//!
//! ```
//! use sockstep::Endpoint;
//!
//! let e: Endpoint = "tcp://127.0.0.1:7878".parse()?;
//! assert_eq!(e.to_string(), "tcp://127.0.0.1:7878");
//! let v6: Endpoint = "udp://[::1]:9000".parse()?;
//! assert_eq!(v6.port(), 9000);
//! # Ok::<(), sockstep::Error>(())
//! ```
//!
//! A host may also be a name (`tcp://localhost:80`). A name is not an address:
//! turning it into one is a step of its own, [`Endpoint::resolve`], which asks the
//! system resolver and may return several addresses (IPv4 and IPv6). sockstep never
//! resolves behind your back.
//!
//! Port 0 means "let the operating system choose". The chosen port is only known
//! after `bind()`, which reports it back (see
//! [`Bound::local_endpoint`](crate::tcp::server::Bound::local_endpoint)).

use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::str::FromStr;

use crate::error::{Error, ErrorKind};
use crate::step::Step;

/// The protocol part of a socket's identity: stream (TCP) or datagram (UDP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// 스트림: a two-way, ordered, reliable byte stream over a connection.
    Tcp,
    /// 데이터그램: connectionless, size-limited messages with no delivery guarantee.
    Udp,
}

impl Protocol {
    /// The scheme written before `://`.
    pub fn scheme(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// The address family socket(2) is given for `addr`, as C names it.
pub(crate) fn family(addr: &SocketAddr) -> &'static str {
    match addr {
        SocketAddr::V4(_) => "AF_INET",
        SocketAddr::V6(_) => "AF_INET6",
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.scheme())
    }
}

/// The host part: an IP address, or a name still to be resolved.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// An IPv4 or IPv6 address, usable as it is.
    Ip(IpAddr),
    /// A DNS or `/etc/hosts` name such as `localhost`; see [`Endpoint::resolve`].
    Name(String),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}"),
            Host::Name(name) => f.write_str(name),
        }
    }
}

/// A socket's identity: protocol + host + port, printed as `tcp://127.0.0.1:7878`.
///
/// # Examples
///
/// ```
/// use sockstep::{Endpoint, Protocol};
/// use std::net::SocketAddr;
///
/// let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
/// let e = Endpoint::from_addr(Protocol::Tcp, addr);
/// assert_eq!(e.to_string(), "tcp://127.0.0.1:0");
/// assert_eq!(e.socket_addr(), Some(addr));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    protocol: Protocol,
    host: Host,
    port: u16,
}

/// The longest DNS name (RFC 1035: 255 octets on the wire, 253 as text).
const MAX_HOST_NAME: usize = 253;
/// The longest label between dots (RFC 1035).
const MAX_LABEL: usize = 63;

impl Endpoint {
    /// An endpoint from its three parts.
    pub fn new(protocol: Protocol, host: Host, port: u16) -> Endpoint {
        Endpoint {
            protocol,
            host,
            port,
        }
    }

    /// An endpoint for an address the OS gave us (after bind, accept or connect).
    pub fn from_addr(protocol: Protocol, addr: SocketAddr) -> Endpoint {
        Endpoint::new(protocol, Host::Ip(addr.ip()), addr.port())
    }

    /// Parses `ADDR`, taking the protocol from a `tcp://` or `udp://` prefix when
    /// there is one and using `default` otherwise, so a command line can accept
    /// `127.0.0.1:7878` where the verb already says "tcp".
    ///
    /// # Errors
    /// As for [`str::parse`]; a prefix that contradicts `default` is not an error
    /// here — the caller decides whether a `udp://` endpoint fits a TCP verb.
    pub fn parse_with_default(s: &str, default: Protocol) -> Result<Endpoint, Error> {
        if s.contains("://") {
            s.parse()
        } else {
            parse_host_port(s, default, s)
        }
    }

    /// The protocol part.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The host part.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The port part; 0 means "the OS will choose at bind time".
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The socket address, when the host is already an IP address.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self.host {
            Host::Ip(ip) => Some(SocketAddr::new(ip, self.port)),
            Host::Name(_) => None,
        }
    }

    /// Turns the host into socket addresses: the explicit name-resolution step.
    ///
    /// An IP literal resolves to itself without asking anyone. A name goes to the
    /// system resolver (std's `ToSocketAddrs`, which calls getaddrinfo(3): it reads
    /// `/etc/hosts` and may ask DNS), and can yield several addresses — `localhost`
    /// often gives both `::1` and `127.0.0.1`. They come back in the resolver's
    /// order of preference; a client tries them in that order.
    ///
    /// # Errors
    /// [`ErrorKind::NameNotResolved`] when the resolver knows no address for the
    /// name, with the resolver's own message attached.
    pub fn resolve(&self) -> Result<Vec<SocketAddr>, Error> {
        match &self.host {
            Host::Ip(ip) => Ok(vec![SocketAddr::new(*ip, self.port)]),
            Host::Name(name) => {
                let addrs: Vec<SocketAddr> = (name.as_str(), self.port)
                    .to_socket_addrs()
                    .map_err(|e| {
                        Error::new(Step::Resolve, ErrorKind::NameNotResolved)
                            .at(self.clone())
                            .with_io(e)
                    })?
                    .collect();
                if addrs.is_empty() {
                    return Err(
                        Error::new(Step::Resolve, ErrorKind::NameNotResolved).at(self.clone())
                    );
                }
                Ok(addrs)
            }
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.protocol, self.host, self.port)
    }
}

impl FromStr for Endpoint {
    type Err = Error;

    /// Parses `PROTOCOL://HOST:PORT`, where HOST is an IPv4 address, an IPv6
    /// address in brackets, or a name.
    ///
    /// # Errors
    /// [`ErrorKind::BadEndpoint`] naming the part that is wrong — the scheme, the
    /// host or the port — and why.
    fn from_str(s: &str) -> Result<Endpoint, Error> {
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(bad(
                s,
                "scheme",
                "missing; write tcp://HOST:PORT or udp://HOST:PORT",
            ));
        };
        let protocol = match scheme.to_ascii_lowercase().as_str() {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            _ => return Err(bad(s, "scheme", "must be tcp or udp")),
        };
        parse_host_port(rest, protocol, s)
    }
}

/// Parses `HOST:PORT` (the part after `://`); `whole` is the full input, for errors.
fn parse_host_port(rest: &str, protocol: Protocol, whole: &str) -> Result<Endpoint, Error> {
    let (host, port) = if let Some(after_bracket) = rest.strip_prefix('[') {
        let Some((inside, after)) = after_bracket.split_once(']') else {
            return Err(bad(
                whole,
                "host",
                "an IPv6 address opened with [ is never closed with ]",
            ));
        };
        let ip: IpAddr = match inside.parse() {
            Ok(ip @ IpAddr::V6(_)) => ip,
            _ => return Err(bad(whole, "host", "brackets must hold an IPv6 address")),
        };
        let Some(port) = after.strip_prefix(':') else {
            return Err(bad(whole, "port", "missing; write [IPv6]:PORT"));
        };
        (Host::Ip(ip), port)
    } else {
        let Some((host, port)) = rest.rsplit_once(':') else {
            return Err(bad(
                whole,
                "port",
                "missing; write HOST:PORT (use 0 to let the OS choose)",
            ));
        };
        if host.contains(':') {
            return Err(bad(
                whole,
                "host",
                "an IPv6 address must be in brackets, as in [::1]:9000",
            ));
        }
        (parse_host(host, whole)?, port)
    };
    let port: u16 = port
        .parse()
        .map_err(|_| bad(whole, "port", "must be a number from 0 to 65535"))?;
    Ok(Endpoint::new(protocol, host, port))
}

fn parse_host(host: &str, whole: &str) -> Result<Host, Error> {
    if host.is_empty() {
        return Err(bad(whole, "host", "empty; write an IP address or a name"));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(Host::Ip(ip));
    }
    let all_digits_and_dots = host.chars().all(|c| c.is_ascii_digit() || c == '.');
    if all_digits_and_dots {
        return Err(bad(
            whole,
            "host",
            "not a valid IPv4 address (four numbers 0-255)",
        ));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= MAX_LABEL
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if host.len() > MAX_HOST_NAME || !host.trim_end_matches('.').split('.').all(label_ok) {
        return Err(bad(
            whole,
            "host",
            "not an IP address, and not a valid host name (letters, digits, '-' and '.')",
        ));
    }
    Ok(Host::Name(host.to_string()))
}

fn bad(input: &str, part: &'static str, reason: &'static str) -> Error {
    Error::new(
        Step::Parse,
        ErrorKind::BadEndpoint {
            input: input.to_string(),
            part,
            reason,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part_of(s: &str) -> &'static str {
        match s.parse::<Endpoint>().unwrap_err().kind() {
            ErrorKind::BadEndpoint { part, .. } => part,
            other => panic!("expected BadEndpoint, got {other:?}"),
        }
    }

    #[test]
    fn prints_what_it_parsed() {
        for s in [
            "tcp://127.0.0.1:7878",
            "udp://[::1]:9000",
            "tcp://localhost:80",
            "tcp://0.0.0.0:0",
            "udp://[fe80::1]:65535",
        ] {
            assert_eq!(s.parse::<Endpoint>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn names_stay_names_until_resolved() {
        let e: Endpoint = "tcp://localhost:80".parse().unwrap();
        assert_eq!(e.host(), &Host::Name("localhost".into()));
        assert_eq!(e.socket_addr(), None);
    }

    #[test]
    fn resolving_an_ip_literal_gives_itself() {
        let e: Endpoint = "tcp://[::1]:5".parse().unwrap();
        assert_eq!(e.resolve().unwrap(), vec!["[::1]:5".parse().unwrap()]);
    }

    #[test]
    fn resolving_localhost_gives_a_loopback_address() {
        let e: Endpoint = "tcp://localhost:80".parse().unwrap();
        let addrs = e.resolve().unwrap();
        assert!(
            addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 80),
            "{addrs:?}"
        );
    }

    #[test]
    fn parse_errors_name_the_bad_part() {
        assert_eq!(part_of("127.0.0.1:80"), "scheme");
        assert_eq!(part_of("sctp://127.0.0.1:80"), "scheme");
        assert_eq!(part_of("tcp://:80"), "host");
        assert_eq!(part_of("tcp://::1:80"), "host");
        assert_eq!(part_of("tcp://[::1:80"), "host");
        assert_eq!(part_of("tcp://[127.0.0.1]:80"), "host");
        assert_eq!(part_of("tcp://300.1.1.1:80"), "host");
        assert_eq!(part_of("tcp://bad_name:80"), "host");
        assert_eq!(part_of("tcp://127.0.0.1"), "port");
        assert_eq!(part_of("tcp://127.0.0.1:65536"), "port");
        assert_eq!(part_of("tcp://127.0.0.1:http"), "port");
        assert_eq!(part_of("tcp://[::1]"), "port");
    }

    #[test]
    fn parse_error_message_quotes_input_and_part() {
        let msg = "tcp://127.0.0.1:99999"
            .parse::<Endpoint>()
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("tcp://127.0.0.1:99999") && msg.contains("port"),
            "{msg}"
        );
    }

    #[test]
    fn default_protocol_applies_only_without_a_scheme() {
        let e = Endpoint::parse_with_default("127.0.0.1:1", Protocol::Tcp).unwrap();
        assert_eq!(e.protocol(), Protocol::Tcp);
        let e = Endpoint::parse_with_default("udp://127.0.0.1:1", Protocol::Tcp).unwrap();
        assert_eq!(e.protocol(), Protocol::Udp);
    }
}
