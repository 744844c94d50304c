//! The syscall map: which system calls each step of a walkthrough made, as
//! `strace` saw them — the table behind `docs/syscalls.md` (`make syscalls`).
//!
//! A walkthrough prints a line for every step, from the thread that took the
//! step, right after the step's calls returned. Run it under
//! `strace -f -e trace=`[`STRACE_CLASSES`] and both show up in one log, in
//! order, per thread: the socket calls, and the `write(1, …)` of each printed
//! line. [`SyscallMap::from_strace`] reads that log and gives each step the
//! calls its thread made since its previous step:
//!
//! - most steps print *after* their calls, so a step owns the calls its
//!   thread made before its line (since the previous step's);
//! - two print *before*: TCP `connect()` says "SYN sent" and then connects, so
//!   it owns the calls after its line up to its thread's next step (the
//!   `connected` line); `close()` says so and then the descriptor is
//!   released, so it owns the next `close(2)` of its thread;
//! - a call on a socket that another step already showed to be a different
//!   socket's is not this step's (one thread can hold several sockets);
//! - settings are no step's: `setsockopt` for timeouts and `TCP_NODELAY`,
//!   `getsockopt` (our code sets them between steps; `SO_REUSEADDR` is part
//!   of std's bind and stays with it);
//! - calls no step owns (settings, an untraced part of a walkthrough, the
//!   server's wake-up connection at shutdown) are counted apart, as "between
//!   steps".
//!
//! Only calls on sockets are kept: `close`, `ioctl`, `poll` and `write` count
//! when their descriptor came from `socket()` or `accept4()`.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use crate::endpoint::Protocol;
use crate::step::{Side, Step};

/// The strace classes to trace: the socket calls (`network`), plus `close`,
/// `ioctl` and `poll` (`connect_timeout` uses both), plus `write`, for the
/// walkthrough's own printed lines.
pub const STRACE_CLASSES: &str = "network,close,ioctl,poll,write";

/// The walkthroughs the map is made of, in reading order.
pub const WALKS: [&str; 4] = ["tcp", "udp", "http", "push"];

/// One walkthrough's map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyscallMap {
    /// The walkthrough: `tcp`, `udp`, `http`, `push`.
    pub walk: String,
    /// One per (protocol, side, step), in order of first appearance.
    pub rows: Vec<MapRow>,
    /// Calls no step owns, with how many times each was seen, in order of first appearance.
    pub between: Vec<(String, usize)>,
}

/// The calls of one kind of step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapRow {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// Server or client.
    pub side: Side,
    /// The step.
    pub step: Step,
    /// How many times the step was taken.
    pub events: usize,
    /// Each different sequence of calls the step made, with how many times
    /// it made it, most frequent first. Calls are written short
    /// (`listen(128)`, `sendto(MSG_NOSIGNAL)`); repeats are counted (`recvfrom ×2`).
    pub variants: Vec<(Vec<String>, usize)>,
}

impl MapRow {
    /// The step as the seed numbers it: `server 2 bind()`.
    pub fn seed_step(&self) -> String {
        match self.step.seed_number(self.side) {
            Some(n) => format!("{} {n} {}", self.side, self.step.name()),
            None => format!("{} {}", self.side, self.step.name()),
        }
    }

    /// Every call the step made, in any of its variants, each once.
    pub fn calls(&self) -> Vec<&str> {
        let mut seen: Vec<&str> = Vec::new();
        for (calls, _) in &self.variants {
            for call in calls {
                let name = call.split(" ×").next().unwrap_or(call);
                if !seen.contains(&name) {
                    seen.push(name);
                }
            }
        }
        seen
    }

    /// Our function that takes this step, and the file it is in.
    pub fn function(&self) -> (&'static str, &'static str) {
        function(self.protocol, self.side, self.step)
    }
}

/// Where a step lives in sockstep: (function, source file).
pub fn function(protocol: Protocol, side: Side, step: Step) -> (&'static str, &'static str) {
    const SERVER: &str = "src/tcp/server.rs";
    const CLIENT: &str = "src/tcp/client.rs";
    const CONNECTION: &str = "src/tcp/connection.rs";
    const SERVE: &str = "src/tcp/serve.rs";
    const UDP: &str = "src/udp/socket.rs";
    match (protocol, side, step) {
        (Protocol::Tcp, Side::Server, Step::Socket) => ("tcp::server::socket", SERVER),
        (Protocol::Tcp, Side::Server, Step::Bind) => ("tcp::server::Socket::bind", SERVER),
        (Protocol::Tcp, Side::Server, Step::Listen) => ("tcp::server::Bound::listen", SERVER),
        (Protocol::Tcp, Side::Server, Step::Accept) => ("tcp::server::Listening::accept", SERVER),
        (Protocol::Tcp, Side::Client, Step::Socket) => ("tcp::client::socket", CLIENT),
        (Protocol::Tcp, Side::Client, Step::Connect | Step::Established) => {
            ("tcp::client::ClientSocket::connect", CLIENT)
        }
        (Protocol::Tcp, _, Step::Read) => ("tcp::connection::Connection::read", CONNECTION),
        (Protocol::Tcp, _, Step::Write) => ("tcp::connection::Connection::write", CONNECTION),
        (Protocol::Tcp, _, Step::Shutdown) => {
            ("tcp::connection::Connection::shutdown_write", CONNECTION)
        }
        (Protocol::Tcp, _, Step::Close) => ("tcp::connection::Connection::close", CONNECTION),
        (Protocol::Tcp, _, Step::Refuse | Step::Serve) => ("tcp::serve (the accept loop)", SERVE),
        (_, _, Step::Message) => (
            "http::server/client, push (bytes already read)",
            "src/http/",
        ),
        (Protocol::Udp, _, Step::Socket) => ("udp::socket::socket", UDP),
        (Protocol::Udp, _, Step::Bind) => ("udp::socket::Socket::bind", UDP),
        (Protocol::Udp, _, Step::Connect) => ("udp::socket::Bound::connect", UDP),
        (Protocol::Udp, _, Step::SendTo) => ("udp::socket::Bound::send_to, Connected::send", UDP),
        (Protocol::Udp, _, Step::RecvFrom) => {
            ("udp::socket::Bound::recv_from, Connected::recv", UDP)
        }
        (Protocol::Udp, _, Step::Close) => ("udp::socket (drop)", UDP),
        _ => ("—", ""),
    }
}

/// One system call from the log, completed (an `<unfinished ...>` call joined
/// with its `<... resumed>` line).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Call {
    pid: u32,
    name: String,
    args: String,
    ret: String,
}

/// One step as the walkthrough printed it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Printed {
    side: Side,
    step: Step,
    socket: u64,
    protocol: Option<Protocol>,
}

/// A call on a socket, written short, with the descriptors it names.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Kept {
    short: String,
    /// The descriptor it acts on (its first argument, or `poll`'s).
    fd: Option<i64>,
    /// The descriptor it made, if it is `socket()`.
    made: Option<i64>,
    /// A setting, which no step owns.
    setting: bool,
}

/// Which calls after a step's line belong to it (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    /// Every call until its thread's next step (TCP `connect()`).
    All(usize),
    /// Its thread's next `close(2)` (`close()`).
    NextClose(usize),
}

impl SyscallMap {
    /// The map of one walkthrough from its strace log (`strace -f -s 256 -e
    /// trace=`[`STRACE_CLASSES`]`, written with `-o`).
    ///
    /// ```
    /// use sockstep::diagram::syscalls::SyscallMap;
    /// use sockstep::{Side, Step};
    ///
    /// let log = r#"7 socket(AF_INET, SOCK_DGRAM|SOCK_CLOEXEC, IPPROTO_IP) = 3
    /// 7 bind(3, {sa_family=AF_INET, sin_port=htons(0), sin_addr=inet_addr("127.0.0.1")}, 16) = 0
    /// 7 write(1, "    0.179 ms  server 2 bind()      #1   udp://127.0.0.1:38443\n", 61) = 61"#;
    /// let map = SyscallMap::from_strace("udp", log);
    /// assert_eq!((map.rows[0].side, map.rows[0].step), (Side::Server, Step::Bind));
    /// assert_eq!(map.rows[0].calls(), ["socket(AF_INET, SOCK_DGRAM|SOCK_CLOEXEC)", "bind"]);
    /// ```
    pub fn from_strace(walk: &str, log: &str) -> SyscallMap {
        let mut sockets: HashSet<i64> = HashSet::new();
        let mut protocols: HashMap<u64, Protocol> = HashMap::new();
        // Which socket of the trace each descriptor is, once a step showed it.
        let mut owners: HashMap<i64, u64> = HashMap::new();
        let mut steps: Vec<(Printed, Vec<String>)> = Vec::new();
        let mut pending: HashMap<u32, Vec<Kept>> = HashMap::new();
        let mut claims: HashMap<u32, Claim> = HashMap::new();
        let mut between: Vec<(String, usize)> = Vec::new();
        let mut unowned = |call: String| match between.iter_mut().find(|(c, _)| *c == call) {
            Some((_, n)) => *n += 1,
            None => between.push((call, 1)),
        };
        // A step takes a call: the call's descriptors are now known to be its
        // socket's — except in accept(), whose calls also touch the new socket
        // (accept4 makes it, getsockname asks its address).
        let take = |owners: &mut HashMap<i64, u64>, printed: &Printed, kept: &Kept| {
            if printed.step != Step::Accept {
                for fd in [kept.fd, kept.made].into_iter().flatten() {
                    owners.entry(fd).or_insert(printed.socket);
                }
            }
            if let (true, Some(fd)) = (kept.short == "close", kept.fd) {
                owners.remove(&fd);
            }
        };

        for call in calls(log) {
            if call.name == "write" && fd(&call.args) == Some(1) {
                for printed in printed_steps(&call.args) {
                    let pid = call.pid;
                    let protocol = printed
                        .protocol
                        .or_else(|| protocols.get(&printed.socket).copied());
                    if let Some(p) = protocol {
                        protocols.insert(printed.socket, p);
                    }
                    let tcp_connect =
                        printed.step == Step::Connect && protocol != Some(Protocol::Udp);
                    let mut owned = Vec::new();
                    for kept in pending.remove(&pid).unwrap_or_default() {
                        let other = kept
                            .fd
                            .and_then(|fd| owners.get(&fd))
                            .is_some_and(|&s| s != printed.socket);
                        if tcp_connect || printed.step == Step::Close || other {
                            unowned(kept.short);
                        } else {
                            take(&mut owners, &printed, &kept);
                            owned.push(kept.short);
                        }
                    }
                    let index = steps.len();
                    steps.push((printed.clone(), owned));
                    match printed.step {
                        _ if tcp_connect => claims.insert(pid, Claim::All(index)),
                        Step::Close => claims.insert(pid, Claim::NextClose(index)),
                        _ => claims.remove(&pid),
                    };
                }
                continue;
            }
            let Some(kept) = keep(&call, &mut sockets) else {
                continue;
            };
            if kept.setting {
                unowned(kept.short);
                continue;
            }
            match claims.get(&call.pid).copied() {
                Some(Claim::All(step)) => {
                    take(&mut owners, &steps[step].0, &kept);
                    steps[step].1.push(kept.short);
                }
                Some(Claim::NextClose(step)) if kept.short == "close" => {
                    take(&mut owners, &steps[step].0, &kept);
                    steps[step].1.push(kept.short);
                    claims.remove(&call.pid);
                }
                _ => pending.entry(call.pid).or_default().push(kept),
            }
        }
        let mut left: Vec<(u32, Vec<Kept>)> = pending.into_iter().collect();
        left.sort_unstable_by_key(|(pid, _)| *pid);
        for kept in left.into_iter().flat_map(|(_, calls)| calls) {
            unowned(kept.short);
        }

        let mut rows: Vec<MapRow> = Vec::new();
        for (printed, calls) in steps {
            let protocol = protocols
                .get(&printed.socket)
                .copied()
                .unwrap_or(Protocol::Tcp);
            let calls = counted(calls);
            let row = match rows
                .iter_mut()
                .find(|r| (r.protocol, r.side, r.step) == (protocol, printed.side, printed.step))
            {
                Some(row) => row,
                None => {
                    rows.push(MapRow {
                        protocol,
                        side: printed.side,
                        step: printed.step,
                        events: 0,
                        variants: Vec::new(),
                    });
                    let last = rows.len() - 1;
                    &mut rows[last]
                }
            };
            row.events += 1;
            match row.variants.iter_mut().find(|(c, _)| *c == calls) {
                Some((_, n)) => *n += 1,
                None => row.variants.push((calls, 1)),
            }
        }
        for row in &mut rows {
            // Most frequent first; ties keep their order of appearance.
            row.variants.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        }
        SyscallMap {
            walk: walk.to_string(),
            rows,
            between,
        }
    }

    /// The row of `side`'s `step`, if the walkthrough took it.
    pub fn row(&self, side: Side, step: Step) -> Option<&MapRow> {
        self.rows.iter().find(|r| r.side == side && r.step == step)
    }
}

/// The log's calls, in the order they completed.
fn calls(log: &str) -> Vec<Call> {
    let mut unfinished: HashMap<u32, String> = HashMap::new();
    let mut calls = Vec::new();
    for line in log.lines() {
        let Some((pid, rest)) = line.split_once(' ') else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        let rest = rest.trim_start();
        if rest.starts_with("+++") || rest.starts_with("---") {
            continue;
        }
        let whole = if let Some(resumed) = rest.strip_prefix("<... ") {
            let Some((_, tail)) = resumed.split_once(" resumed>") else {
                continue;
            };
            match unfinished.remove(&pid) {
                Some(head) => format!("{head}{tail}"),
                None => continue,
            }
        } else if let Some(head) = rest.strip_suffix("<unfinished ...>") {
            unfinished.insert(pid, head.trim_end().to_string());
            continue;
        } else {
            rest.to_string()
        };
        let Some((name, after)) = whole.split_once('(') else {
            continue;
        };
        let Some((args, ret)) = after.rsplit_once(" = ") else {
            continue;
        };
        let args = args
            .trim_end()
            .strip_suffix(')')
            .unwrap_or(args)
            .to_string();
        calls.push(Call {
            pid,
            name: name.trim().to_string(),
            args,
            ret: ret.trim().to_string(),
        });
    }
    calls
}

/// A call's first argument, when it is a descriptor.
fn fd(args: &str) -> Option<i64> {
    args.split(',').next()?.trim().parse().ok()
}

/// The value a call returned, when it is a number.
fn returned(call: &Call) -> Option<i64> {
    call.ret.split_whitespace().next()?.parse().ok()
}

/// The error name a failed call returned (`EINPROGRESS`), if it failed.
fn errno(call: &Call) -> Option<&str> {
    let mut words = call.ret.split_whitespace();
    (words.next()? == "-1").then(|| words.next()).flatten()
}

/// The call written short, if it is one on a socket; keeps `sockets` (the
/// descriptors that are sockets now) up to date.
fn keep(call: &Call, sockets: &mut HashSet<i64>) -> Option<Kept> {
    const SOCKET_CALLS: [&str; 16] = [
        "socket",
        "bind",
        "listen",
        "accept",
        "accept4",
        "connect",
        "sendto",
        "recvfrom",
        "sendmsg",
        "recvmsg",
        "setsockopt",
        "getsockopt",
        "getsockname",
        "getpeername",
        "shutdown",
        "socketpair",
    ];
    let on_socket = |fd: Option<i64>| fd.is_some_and(|fd| sockets.contains(&fd));
    let args = call.args.as_str();
    let mut short = match call.name.as_str() {
        "socket" => {
            if let Some(fd) = returned(call).filter(|&fd| fd >= 0) {
                sockets.insert(fd);
            }
            let first_two: Vec<&str> = args.split(", ").take(2).collect();
            format!("socket({})", first_two.join(", "))
        }
        "accept" | "accept4" => {
            if let Some(fd) = returned(call).filter(|&fd| fd >= 0) {
                sockets.insert(fd);
            }
            if args.contains("SOCK_CLOEXEC") {
                format!("{}(SOCK_CLOEXEC)", call.name)
            } else {
                call.name.clone()
            }
        }
        "close" => {
            let fd = fd(args);
            if !on_socket(fd) {
                return None;
            }
            if let Some(fd) = fd {
                sockets.remove(&fd);
            }
            "close".into()
        }
        "ioctl" | "write" => {
            if !on_socket(fd(args)) {
                return None;
            }
            match args.split(", ").nth(1) {
                Some("FIONBIO") => {
                    let on = args.contains("[1]");
                    format!("ioctl(FIONBIO, {})", u8::from(on))
                }
                _ => call.name.clone(),
            }
        }
        "poll" => {
            if !on_socket(poll_fd(args)) {
                return None;
            }
            let events = ["POLLOUT", "POLLIN"]
                .into_iter()
                .filter(|e| args.contains(&format!("events={e}")))
                .collect::<Vec<_>>()
                .join("|");
            format!("poll({events})")
        }
        "listen" => format!("listen({})", args.split(", ").nth(1).unwrap_or("?")),
        "setsockopt" => format!("setsockopt({})", args.split(", ").nth(2).unwrap_or("?")),
        "shutdown" => format!("shutdown({})", args.split(", ").nth(1).unwrap_or("?")),
        "sendto" => {
            let to = if args.trim_end().ends_with("NULL, 0") {
                ""
            } else {
                ", addr"
            };
            let flags = if args.contains("MSG_NOSIGNAL") {
                "MSG_NOSIGNAL"
            } else {
                "0"
            };
            format!("sendto({flags}{to})")
        }
        "recvfrom" => {
            if args.trim_end().ends_with("NULL, NULL") {
                "recvfrom".into()
            } else {
                "recvfrom(addr)".into()
            }
        }
        name if SOCKET_CALLS.contains(&name) => name.to_string(),
        _ => return None,
    };
    if let Some(error) = errno(call) {
        let _ = write!(short, " → {error}");
    }
    // The socket accept4 makes is not the listening socket's, whose step
    // accept() is: it becomes known at the new socket's own first step.
    let made = (call.name == "socket")
        .then(|| returned(call))
        .flatten()
        .filter(|&fd| fd >= 0);
    let acts_on = match call.name.as_str() {
        "socket" => None,
        "poll" => poll_fd(args),
        _ => fd(args),
    };
    let setting =
        call.name == "getsockopt" || (call.name == "setsockopt" && !short.contains("SO_REUSEADDR"));
    Some(Kept {
        short,
        fd: acts_on,
        made,
        setting,
    })
}

/// The descriptor a `poll` waits on: `[{fd=4, events=POLLOUT}]`.
fn poll_fd(args: &str) -> Option<i64> {
    args.split("fd=")
        .nth(1)?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Runs of one call become one entry: `recvfrom ×3`.
fn counted(calls: Vec<String>) -> Vec<String> {
    let mut out: Vec<(String, usize)> = Vec::new();
    for call in calls {
        match out.last_mut() {
            Some((last, n)) if *last == call => *n += 1,
            _ => out.push((call, 1)),
        }
    }
    out.into_iter()
        .map(|(call, n)| {
            if n == 1 {
                call
            } else {
                format!("{call} ×{n}")
            }
        })
        .collect()
}

/// The steps a `write(1, …)` printed: each line that reads like a printed
/// trace line (`   0.212 ms  server 2 bind()      #1   tcp://…`).
fn printed_steps(args: &str) -> Vec<Printed> {
    let text = match (args.find('"'), args.rfind('"')) {
        (Some(open), Some(close)) if close > open => unescape(&args[open + 1..close]),
        _ => return Vec::new(),
    };
    text.lines().filter_map(printed_step).collect()
}

fn printed_step(line: &str) -> Option<Printed> {
    let (time, rest) = line.split_once(" ms  ")?;
    time.trim().parse::<f64>().ok()?;
    let mut words = rest.split_whitespace().peekable();
    let side = match words.next()? {
        "server" => Side::Server,
        "client" => Side::Client,
        _ => return None,
    };
    if words.peek()?.chars().all(|c| c.is_ascii_digit()) {
        words.next();
    }
    let name = words.next()?;
    let step = Step::named(name)?;
    let socket = words.next()?.strip_prefix('#')?.parse().ok()?;
    let protocol = if rest.contains("udp://") || rest.contains("SOCK_DGRAM") {
        Some(Protocol::Udp)
    } else if rest.contains("tcp://") || rest.contains("SOCK_STREAM") {
        Some(Protocol::Tcp)
    } else {
        None
    };
    Some(Printed {
        side,
        step,
        socket,
        protocol,
    })
}

/// A C string as strace prints it (`\n`, `\"`, `\342\200\224`) back to text.
fn unescape(text: &str) -> String {
    let mut bytes = Vec::with_capacity(text.len());
    let mut chars = text.bytes().peekable();
    while let Some(b) = chars.next() {
        if b != b'\\' {
            bytes.push(b);
            continue;
        }
        match chars.next() {
            Some(b'n') => bytes.push(b'\n'),
            Some(b't') => bytes.push(b'\t'),
            Some(b'r') => bytes.push(b'\r'),
            Some(d @ b'0'..=b'7') => {
                let mut value = u32::from(d - b'0');
                for _ in 0..2 {
                    match chars.peek() {
                        Some(&o @ b'0'..=b'7') => {
                            value = value * 8 + u32::from(o - b'0');
                            chars.next();
                        }
                        _ => break,
                    }
                }
                bytes.push(u8::try_from(value).unwrap_or(b'?'));
            }
            Some(other) => bytes.push(other),
            None => {}
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// `docs/syscalls.md`: the maps as Markdown tables, one per walkthrough.
pub fn markdown(maps: &[SyscallMap], command: &str) -> String {
    let mut out = String::new();
    out.push_str("# The system calls behind each step\n\n");
    let _ = writeln!(
        out,
        "<!-- Generated by `make syscalls` from real runs; do not edit by hand. -->\n"
    );
    let _ = write!(
        out,
        "Each walkthrough ran under `{command}`. A walkthrough prints a line for every step,\n\
         from the thread that took it, right after the step's calls return; a step owns the\n\
         calls on sockets its thread made since its previous step. TCP `connect()` prints\n\
         before it connects, so it owns the calls up to its `connected` line; `close()` prints\n\
         before the descriptor is released, so it owns its thread's next `close(2)`. Calls no\n\
         step owns are counted on the last line of each table: settings our code makes between\n\
         steps (`setsockopt` for timeouts and `TCP_NODELAY`), parts that are not traced (the UDP\n\
         walkthrough's 1,000 datagrams, the server's wake-up connection at shutdown). *taken*\n\
         counts how many times the step was taken. How the map is read:\n\
         [`diagram::syscalls`](../src/diagram/syscalls.rs); the checks that keep it true:\n\
         `tests/syscall_map.rs` and `tests/syscalls.rs`. What the seed's steps mean:\n\
         [tcp.md](tcp.md), [udp.md](udp.md).\n\n"
    );
    for map in maps {
        let _ = writeln!(out, "## sockstep walk {}\n", map.walk);
        let picture = format!("img/walk-{}.svg", map.walk);
        let _ = writeln!(out, "The same run as a picture: [{picture}]({picture}).\n");
        out.push_str("| seed step | our function | taken | system calls observed |\n");
        out.push_str("|---|---|---:|---|\n");
        for row in &map.rows {
            let (function, file) = row.function();
            let function = if file.is_empty() {
                function.to_string()
            } else {
                format!("[`{function}`](../{file})")
            };
            let calls = if row.variants.iter().all(|(c, _)| c.is_empty()) {
                "none".to_string()
            } else {
                row.variants
                    .iter()
                    .map(|(calls, n)| {
                        let seq = if calls.is_empty() {
                            "none".to_string()
                        } else {
                            calls
                                .iter()
                                .map(|c| format!("`{}`", cell(c)))
                                .collect::<Vec<_>>()
                                .join(" → ")
                        };
                        if row.variants.len() > 1 {
                            format!("{seq} ({n}×)")
                        } else {
                            seq
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("<br>")
            };
            let _ = writeln!(
                out,
                "| {} {} | {function} | {} | {calls} |",
                protocol_name(row.protocol),
                row.seed_step(),
                row.events
            );
        }
        let between = if map.between.is_empty() {
            "none".to_string()
        } else {
            map.between
                .iter()
                .map(|(c, n)| format!("`{}` ×{n}", cell(c)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(out, "| (between steps) | — | — | {between} |\n");
    }
    out
}

fn protocol_name(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
    }
}

/// Text for a Markdown table cell: a `|` would end the cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A piece of a real log (`walk tcp`, strace 6.1): threads 11, 12, 13.
    const LOG: &str = r#"11 socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC, IPPROTO_IP) = 3
11 setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0
11 bind(3, {sa_family=AF_INET, sin_port=htons(0), sin_addr=inet_addr("127.0.0.1")}, 16) = 0
11 listen(3, 128)                    = 0
11 write(1, "    0.212 ms  server 2 bind()      #1   tcp://127.0.0.1:46555  port 0 asked\n", 70) = 70
11 write(1, "    0.423 ms  client 2 connect()   #2   <-> tcp://127.0.0.1:46555  SYN sent\n", 70) = 70
11 socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC, IPPROTO_IP) = 4
11 ioctl(4, FIONBIO, [1])            = 0
11 connect(4, {sa_family=AF_INET, sin_port=htons(46555)}, 16 <unfinished ...>
12 accept4(3,  <unfinished ...>
11 <... connect resumed>)            = -1 EINPROGRESS (Operation now in progress)
12 <... accept4 resumed>{sa_family=AF_INET, sin_port=htons(39950)}, [128 => 16], SOCK_CLOEXEC) = 5
11 poll([{fd=4, events=POLLOUT}], 1, 4999) = 1 ([{fd=4, revents=POLLOUT}])
12 write(1, "    4.994 ms  server 4 accept()    #1   tcp://127.0.0.1:46555 <-> tcp://127.0.0.1:50420\n", 80) = 80
11 write(1, "    0.571 ms  client 3 connected   #2   tcp://127.0.0.1:50420 <-> tcp://127.0.0.1:46555\n", 80) = 80
13 recvfrom(5, "", 65536, 0, NULL, NULL) = 0
13 write(1, "    8.990 ms  server   read()      #3   tcp://127.0.0.1:46555 <-> tcp://127.0.0.1:50420  0 bytes\n", 90) = 90
13 write(1, "    9.030 ms  server   close()     #3   tcp://127.0.0.1:46555 <-> tcp://127.0.0.1:50420\n", 80) = 80
13 close(5)                          = 0
13 close(7)                          = 0
11 close(3)                          = 0
13 +++ exited with 0 +++"#;

    #[test]
    fn each_step_owns_the_calls_its_thread_made_for_it() {
        let map = SyscallMap::from_strace("tcp", LOG);
        let calls = |side, step| map.row(side, step).map(MapRow::calls).unwrap_or_default();
        assert_eq!(
            calls(Side::Server, Step::Bind),
            [
                "socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC)",
                "setsockopt(SO_REUSEADDR)",
                "bind",
                "listen(128)"
            ]
        );
        assert_eq!(
            calls(Side::Client, Step::Connect),
            [
                "socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC)",
                "ioctl(FIONBIO, 1)",
                "connect → EINPROGRESS",
                "poll(POLLOUT)"
            ]
        );
        assert!(calls(Side::Client, Step::Established).is_empty());
        assert_eq!(calls(Side::Server, Step::Accept), ["accept4(SOCK_CLOEXEC)"]);
        assert_eq!(calls(Side::Server, Step::Read), ["recvfrom"]);
        assert_eq!(calls(Side::Server, Step::Close), ["close"]);
        // close(7) was never a socket; close(3) came after thread 11's last step.
        assert_eq!(map.between, [("close".to_string(), 1)]);
    }

    #[test]
    fn the_markdown_escapes_the_pipe_of_socket_flags() {
        let map = SyscallMap::from_strace("tcp", LOG);
        let md = markdown(&[map], "strace");
        assert!(
            md.contains("`socket(AF_INET, SOCK_STREAM\\|SOCK_CLOEXEC)`"),
            "{md}"
        );
        assert!(
            md.contains(
                "| TCP server 2 bind() | [`tcp::server::Socket::bind`](../src/tcp/server.rs) | 1 |"
            ),
            "{md}"
        );
    }

    #[test]
    fn strace_strings_unescape_to_text() {
        assert_eq!(unescape(r#"a\n\"b\" \342\200\224"#), "a\n\"b\" —");
    }
}
