//! Two computers on one machine: two network namespaces joined by a virtual
//! cable, each with its own IP address — for tests (and the `walk hosts`
//! walkthrough) that need a server on "another host".
//!
//! # The idea
//!
//! The seed says an IP address names a computer (IP: 전 세계 컴퓨터에 부여된 고유의
//! 식별 주소) and a port names a process *within one host* (포트: 호스트 내부적으로
//! 프로세스가 할당받아야 하는 고유한 숫자). On loopback both ends are the same
//! computer with the same address, so neither sentence can be seen. Linux can
//! give one machine several network stacks — *network namespaces*, each with
//! its own interfaces, addresses, routes, ports and firewall — and join two of
//! them with a *veth pair*, a virtual cable whose two ends are network
//! interfaces in different namespaces. That is two real IP hosts:
//!
//! ```text
//!   host A: namespace sockstep-host-a-PID-N        host B: namespace sockstep-host-b-PID-N
//!   ┌──────────────────────────────┐               ┌──────────────────────────────┐
//!   │ lo  127.0.0.1                │   veth pair   │ lo  127.0.0.1                │
//!   │ veth-a  198.18.0.1/24  ──────┼───────────────┼──────  veth-b  198.18.0.2/24 │
//!   └──────────────────────────────┘               └──────────────────────────────┘
//! ```
//!
//! [`TwoHosts::create`] builds that; [`Computer::start`] runs a program on
//! either host; [`TwoHosts::lose_on_b`] makes the cable lose packets on the
//! way into host B; dropping the guard takes it all down again.
//!
//! The addresses come from 198.18.0.0/15, which RFC 2544 (and RFC 5735)
//! reserves for exactly this: benchmark networks that must never meet a real
//! one. Neither namespace has any other interface or a route anywhere else, and
//! the machine's own network stack (the *root* namespace) never holds either
//! end of the cable, so nothing sent on these hosts can leave them.
//!
//! # Why programs, not threads
//!
//! A process (strictly, a thread) enters a namespace with setns(2), and std
//! does not offer it. So code runs on a host as a separate program started by
//! `ip netns exec NAME program args…`, which enters the namespace and then
//! execs the program in place ([`Computer::command`]). A test that wants its
//! own code on a host runs a binary — sockstep's (`tcp listen`, `udp send`, …:
//! an integration test finds it at `env!("CARGO_BIN_EXE_sockstep")`), or its own
//! test binary again, as `tests/kernel_loss.rs` does.
//!
//! # Teardown, on every path
//!
//! Deleting a namespace (`ip netns del`) deletes its end of the veth pair, and
//! the pair goes with it; its nftables rules go too. Three things make sure
//! that happens:
//!
//! 1. **Drop.** [`TwoHosts`] is a guard: when it goes out of scope — normally,
//!    on an early `?` return, or while a panicking test unwinds — both
//!    namespaces are deleted. [`HostProcess`] borrows its [`Computer`], so the
//!    compiler ends every process started here before the hosts go.
//! 2. **A janitor, for Ctrl-C and `kill -9`.** std has no signal handling, and
//!    SIGINT or SIGKILL end the process without running any `Drop`. So
//!    [`TwoHosts::create`] first starts a small `sh` script in a process group
//!    of its own (Ctrl-C at a terminal signals only the foreground group) and
//!    keeps the write end of a pipe to its standard input. The script reads the
//!    namespaces' names from that pipe and waits. However the owner ends —
//!    dropping the guard, a panic, Ctrl-C, `kill -9`, `abort` — the kernel
//!    closes the owner's end of the pipe, the script reads end-of-file, ends
//!    any process still running in the namespaces (`ip netns pids`), and
//!    deletes them. The normal drop takes this same path, so it is exercised by
//!    every run, not only by the rare killed one.
//! 3. **A sweep, for whatever is left.** If even the janitor cannot run (no
//!    `sh`, or it was killed too), the namespaces' names say who made them:
//!    `sockstep-host-a-PID-N`. Every [`TwoHosts::create`] first deletes the
//!    namespaces of that form whose process `PID` no longer exists
//!    ([`Namespace::create`] does the sweep).
//!
//! What no code can promise: a machine that loses power mid-run keeps nothing
//! anyway (namespaces live in memory), and a process id reused by an unrelated
//! process before the next run delays that namespace's sweep until the
//! unrelated process ends.
//!
//! # Losing packets on the link
//!
//! [`TwoHosts::lose_on_b`] adds an nftables rule to host B's **input** hook
//! that drops a percentage of the packets arriving there — for one port or for
//! all traffic. The sender is told nothing, as with real loss. (An output-hook
//! drop would make the sender's `send` fail with EPERM, which is not loss.)
//! Both ends of the cable are set to split TCP into segments before they enter
//! it (`gso_max_segs 1`): otherwise the kernel passes the cable "super-packets"
//! of up to 64 KB, and a rule that drops 10 % of packets would drop 10 % of
//! bursts instead of 10 % of segments.
//!
//! # Example
//!
//! As root, with iproute2 and nftables (anywhere else, say why and skip):
//!
//! ```no_run
//! use sockstep::testkit::hosts::{Traffic, TwoHosts};
//!
//! if let Err(why) = TwoHosts::prerequisites() {
//!     eprintln!("SKIPPED: {why}");
//!     return Ok(());
//! }
//! let sockstep = "target/debug/sockstep"; // env!("CARGO_BIN_EXE_sockstep") in an integration test
//! let hosts = TwoHosts::create()?;
//! hosts.lose_on_b(Traffic::Tcp { port: 7878 }, 10)?;
//! let server = hosts.b().start_server(sockstep, &["tcp", "listen", "198.18.0.2:7878"], "listening on")?;
//! let output = hosts.a().run(sockstep, &["tcp", "connect", "198.18.0.2:7878"], b"hello\n")?;
//! assert_eq!(output.stdout, b"hello\n"); // across the cable, through the loss
//! server.stop()?;
//! # Ok::<(), sockstep::Error>(())
//! ```

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::marker::PhantomData;
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind};
use crate::netns::{NFT_CHAIN, NFT_TABLE, Namespace};
use crate::step::Step;

/// Host A's address: the first of RFC 2544's benchmarking range.
pub const HOST_A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

/// Host B's address.
pub const HOST_B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

/// The link's network: 198.18.0.0/24, a slice of 198.18.0.0/15. Both hosts
/// are on it, so each reaches the other directly, with no router.
pub const PREFIX_LEN: u8 = 24;

/// Host A's end of the cable. Interface names are per namespace, so every
/// pair can use the same two.
pub const INTERFACE_A: &str = "veth-a";

/// Host B's end of the cable.
pub const INTERFACE_B: &str = "veth-b";

/// The namespaces are named `PREFIX-a-PID-N` and `PREFIX-b-PID-N`: a person
/// running `ip netns list` sees whose they are, and the sweep finds those of
/// dead processes.
pub const NAMESPACE_PREFIX: &str = "sockstep-host";

/// The cable's MTU: Ethernet's, as a real link between two computers has.
const LINK_MTU: &str = "1500";

/// The longest one `ip` or `nft` command, or [`Computer::run`], may take.
/// Each `ip` finishes in milliseconds; the rest is for a program under test.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest [`Computer::start_server`] waits for a server to say it is
/// ready: a process start and a bind take milliseconds; the rest is for a
/// loaded machine.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest a drop waits for the janitor to end the hosts' processes and
/// delete the namespaces: a few `ip` commands, milliseconds each.
const JANITOR_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`HostProcess::stop`] gives a program to exit after Enter.
/// A sockstep TCP server may take its grace period (2 s) for connections still open.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

// --- the pair -------------------------------------------------------------------

/// Two hosts joined by a veth pair: host A at [`HOST_A`], host B at [`HOST_B`].
/// Deleted, with everything in them, when dropped (see the [module docs](self)).
#[derive(Debug)]
pub struct TwoHosts {
    a: Computer,
    b: Computer,
    setup: Vec<String>,
    janitor: Janitor,
}

/// One of the two hosts: a network namespace with a loopback and one end of
/// the cable, holding one IPv4 address.
#[derive(Debug)]
pub struct Computer {
    namespace: Namespace,
    label: &'static str,
    addr: Ipv4Addr,
    interface: &'static str,
}

/// Which packets arriving at host B a loss rule may drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traffic {
    /// Every packet, whatever its protocol: TCP, UDP, ICMP, IPv6's neighbour
    /// discovery. (ARP is not IP, and is never dropped.)
    All,
    /// UDP datagrams to this port on host B.
    Udp {
        /// The destination port.
        port: u16,
    },
    /// TCP segments to this port on host B — except those that open a
    /// connection (SYN): a lost SYN costs `connect()` a whole second of
    /// retransmission timer, which would make tests slow and is not what they
    /// are about. With a server on host B, that is the client's data and
    /// acknowledgements.
    Tcp {
        /// The destination port.
        port: u16,
    },
}

impl Traffic {
    /// The rule's match, in nftables' words.
    fn matches(self) -> String {
        match self {
            Traffic::All => String::new(),
            Traffic::Udp { port } => format!("udp dport {port} "),
            Traffic::Tcp { port } => format!("tcp dport {port} tcp flags & syn == 0 "),
        }
    }
}

impl TwoHosts {
    /// Whether this process can build two hosts: root, with `ip` (iproute2)
    /// and `nft` (nftables).
    ///
    /// # Errors
    /// The first thing missing, as a phrase: "not root (uid 1000)".
    pub fn prerequisites() -> Result<(), String> {
        Namespace::prerequisites()
    }

    /// Builds the two hosts and the cable between them.
    ///
    /// In order: starts the janitor; deletes namespaces that dead runs left
    /// behind; creates host A's and host B's namespaces (each with its
    /// loopback up and an empty nftables input chain, [`Namespace::create`]);
    /// creates the veth pair *inside* host A with its other end placed
    /// directly in host B — so it never exists in the machine's own network
    /// stack, not even for a moment; gives each end its address; brings both
    /// up. [`TwoHosts::setup`] lists the commands.
    ///
    /// # Errors
    /// [`ErrorKind::Os`] naming the `ip` or `nft` command that failed and what
    /// it said; [`ErrorKind::TimedOut`] if one hangs. Whatever was built before
    /// the failure is deleted again.
    pub fn create() -> Result<TwoHosts, Error> {
        let mut janitor = Janitor::start();
        let a = Namespace::create(&format!("{NAMESPACE_PREFIX}-a"))?;
        janitor.watch(a.name());
        let b = Namespace::create(&format!("{NAMESPACE_PREFIX}-b"))?;
        janitor.watch(b.name());
        let mut setup = Vec::new();
        for name in [a.name(), b.name()] {
            setup.push(format!(
                "ip netns add {name}   (and inside it: lo up; an nftables input chain for loss, empty)"
            ));
        }
        // From here on, dropping `hosts` deletes both namespaces.
        let mut hosts = TwoHosts {
            a: Computer {
                namespace: a,
                label: "host A",
                addr: HOST_A,
                interface: INTERFACE_A,
            },
            b: Computer {
                namespace: b,
                label: "host B",
                addr: HOST_B,
                interface: INTERFACE_B,
            },
            setup,
            janitor,
        };
        let cable = format!(
            "link add {INTERFACE_A} type veth peer name {INTERFACE_B} netns {}",
            hosts.b.name()
        );
        hosts.setup.push(hosts.a.ip(&cable)?);
        for host in [&hosts.a, &hosts.b] {
            let (addr, interface) = (host.addr, host.interface);
            let address = host.ip(&format!("address add {addr}/{PREFIX_LEN} dev {interface}"))?;
            // One packet, one segment: see "Losing packets on the link" above.
            let up = host.ip(&format!(
                "link set {interface} up mtu {LINK_MTU} gso_max_segs 1"
            ))?;
            hosts.setup.extend([address, up]);
        }
        Ok(hosts)
    }

    /// Host A, at [`HOST_A`] — by convention the client's.
    pub fn a(&self) -> &Computer {
        &self.a
    }

    /// Host B, at [`HOST_B`] — by convention the server's, and where
    /// [`TwoHosts::lose_on_b`] loses packets.
    pub fn b(&self) -> &Computer {
        &self.b
    }

    /// The namespaces' names, A's then B's, as `ip netns list` shows them.
    pub fn names(&self) -> [String; 2] {
        [self.a.name().to_string(), self.b.name().to_string()]
    }

    /// The commands that built the hosts, in the order they ran, one per line.
    pub fn setup(&self) -> &[String] {
        &self.setup
    }

    /// From now on, drops `percent` of the `traffic` arriving at host B, at
    /// random, and counts what it drops ([`TwoHosts::dropped_on_b`]). Rules
    /// add up: call it once per port to lose on several.
    ///
    /// Underneath: `nft add rule inet sockstep input MATCH numgen random mod
    /// 100 < PERCENT counter drop`, inside host B.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for a percentage over 100; [`ErrorKind::Os`]
    /// with `nft`'s complaint if it refuses the rule.
    pub fn lose_on_b(&self, traffic: Traffic, percent: u8) -> Result<(), Error> {
        if percent > 100 {
            return Err(Error::new(
                Step::Serve,
                ErrorKind::InvalidInput(format!("a loss of {percent}% is over 100%")),
            ));
        }
        self.b
            .namespace
            .nft(&format!(
                "add rule {NFT_TABLE} {NFT_CHAIN} {}numgen random mod 100 < {percent} counter drop\n",
                traffic.matches()
            ))
            .map(drop)
    }

    /// How many packets the loss rules on host B have dropped so far, all
    /// rules together.
    ///
    /// # Errors
    /// As [`TwoHosts::lose_on_b`].
    pub fn dropped_on_b(&self) -> Result<u64, Error> {
        Ok(self
            .b
            .namespace
            .counters()?
            .iter()
            .map(|(_, packets)| packets)
            .sum())
    }

    /// Removes every loss rule: from now on the cable loses nothing.
    ///
    /// # Errors
    /// As [`TwoHosts::lose_on_b`].
    pub fn heal(&self) -> Result<(), Error> {
        self.b
            .namespace
            .nft(&format!("flush chain {NFT_TABLE} {NFT_CHAIN}\n"))
            .map(drop)
    }
}

impl Drop for TwoHosts {
    fn drop(&mut self) {
        // The janitor ends what still runs on the hosts and deletes both
        // namespaces; then each `Namespace` drops and deletes its own again,
        // which does nothing more — or does the job if the janitor could not.
        self.janitor.finish();
    }
}

impl Computer {
    /// "host A" or "host B".
    pub fn label(&self) -> &'static str {
        self.label
    }

    /// The host's IPv4 address on the cable.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The host's end of the cable: [`INTERFACE_A`] or [`INTERFACE_B`].
    pub fn interface(&self) -> &'static str {
        self.interface
    }

    /// The namespace's name, as `ip netns list` shows it.
    pub fn name(&self) -> &str {
        self.namespace.name()
    }

    /// A command that runs `program` on this host: `ip netns exec NAME
    /// program`. Add arguments, environment and pipes, and spawn it yourself;
    /// [`Computer::start`] does that and keeps the output.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        self.namespace.command(program)
    }

    /// Starts `program args…` on this host, its standard input a pipe
    /// ([`HostProcess::write_stdin`]), its output kept ([`HostProcess::lines`]).
    ///
    /// # Errors
    /// [`ErrorKind::Os`] if it cannot be started.
    pub fn start(
        &self,
        program: impl AsRef<OsStr>,
        args: &[&str],
    ) -> Result<HostProcess<'_>, Error> {
        let mut command = self.command(program);
        command.args(args);
        HostProcess::spawn(command, None)
    }

    /// As [`Computer::start`], and also hands each line of the program's
    /// output, standard output and error alike, to `on_line` as soon as it
    /// arrives — before [`HostProcess::wait_for_line`] sees it, so a caller
    /// printing lines as they come prints them before what it does next.
    ///
    /// # Errors
    /// As [`Computer::start`].
    pub fn start_with(
        &self,
        program: impl AsRef<OsStr>,
        args: &[&str],
        on_line: impl Fn(&str) + Send + Sync + 'static,
    ) -> Result<HostProcess<'_>, Error> {
        let mut command = self.command(program);
        command.args(args);
        HostProcess::spawn(command, Some(Arc::new(on_line)))
    }

    /// Starts a server on this host and returns once it has printed a line
    /// containing `ready`, which says it is bound and serving: for sockstep's
    /// `tcp listen`, `udp listen` and `push serve` that is `"listening on"`,
    /// for `http serve` `"serving http://"`.
    ///
    /// # Errors
    /// As [`Computer::start`]; as [`HostProcess::wait_for_line`] if the line
    /// does not come within [`READY_TIMEOUT`] — a server that could not bind
    /// exits, and the error ends with what it said.
    pub fn start_server(
        &self,
        program: impl AsRef<OsStr>,
        args: &[&str],
        ready: &str,
    ) -> Result<HostProcess<'_>, Error> {
        let server = self.start(program, args)?;
        server.wait_for_line(ready, READY_TIMEOUT)?;
        Ok(server)
    }

    /// Runs `program args…` on this host to its end, with `stdin` as its whole
    /// standard input, and returns its exit status and output. A program that
    /// exits with a failure is not an error here: the status says so.
    ///
    /// # Errors
    /// [`ErrorKind::Os`] if it cannot be started; [`ErrorKind::TimedOut`] if
    /// it runs over [`RUN_TIMEOUT`] (it is killed).
    pub fn run(
        &self,
        program: impl AsRef<OsStr>,
        args: &[&str],
        stdin: &[u8],
    ) -> Result<Output, Error> {
        let mut process = self.start(program, args)?;
        // Written from a thread of its own, so that a program that stops
        // reading cannot block us past the timeout; and a program that exits
        // without reading it all is not an error here: its status says how it
        // ended. The pipe closes when the thread is done: the end of input.
        let writer = process.stdin.take().map(|mut pipe| {
            let input = stdin.to_vec();
            thread::spawn(move || {
                let _ = pipe.write_all(&input);
            })
        });
        let output = process.finish(RUN_TIMEOUT);
        if let Some(writer) = writer {
            // Ends at once: the program has exited (or was killed), so its input pipe is broken.
            let _ = writer.join();
        }
        output
    }

    /// Runs `ip -n NAME ARGS` (ip's own switch into the namespace; `args` is
    /// split at spaces) and returns the command as run, for [`TwoHosts::setup`].
    fn ip(&self, args: &str) -> Result<String, Error> {
        let mut command = ip();
        command.args(["-n", self.name()]).args(args.split(' '));
        let what = format!("ip -n {} {args}", self.name());
        succeed(command, &what)?;
        Ok(what)
    }
}

/// What of these hosts is still on the machine: any of `names` in `ip netns
/// list`, and either end of the cable ([`INTERFACE_A`], [`INTERFACE_B`]) in the
/// machine's own `ip link` — where, built inside the namespaces, it never
/// belongs. Empty once the guard has dropped.
///
/// # Errors
/// [`ErrorKind::Os`] if `ip` cannot be run.
pub fn leftovers(names: &[String]) -> Result<Vec<String>, Error> {
    let mut list = ip();
    list.args(["netns", "list"]);
    let namespaces = succeed(list, "ip netns list")?;
    let mut links = ip();
    links.args(["-o", "link", "show"]);
    let links = succeed(links, "ip -o link show")?;
    let mut left: Vec<String> = names
        .iter()
        .filter(|name| {
            namespaces
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name.as_str()))
        })
        .cloned()
        .collect();
    for interface in [INTERFACE_A, INTERFACE_B] {
        // `ip -o link` lines read "7: veth-a@if6: <…>": the name ends at '@' or ':'.
        let here = links.lines().any(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|n| n.trim_end_matches(':').split('@').next() == Some(interface))
        });
        if here {
            left.push(format!("link {interface}"));
        }
    }
    Ok(left)
}

// --- a program on a host --------------------------------------------------------------

/// A program running on one of the hosts, its output collected as it comes.
///
/// It borrows its [`Computer`], so it cannot outlive the hosts: a process
/// left running in a deleted namespace would keep that network stack — and
/// its end of the cable — alive, unseen. Dropping it kills the program if it
/// still runs; [`HostProcess::stop`] and [`HostProcess::finish`] end it
/// politely.
pub struct HostProcess<'a> {
    child: Child,
    stdin: Option<ChildStdin>,
    captured: Arc<Captured>,
    readers: Vec<JoinHandle<()>>,
    what: String,
    ended: bool,
    _host: PhantomData<&'a Computer>,
}

/// Called with each line of output as it arrives.
type OnLine = Arc<dyn Fn(&str) + Send + Sync>;

/// The output so far, shared with the two reader threads.
#[derive(Default)]
struct Captured {
    state: Mutex<CapturedState>,
    changed: Condvar,
}

#[derive(Default)]
struct CapturedState {
    /// Standard output and standard error, byte for byte.
    streams: [Vec<u8>; 2],
    /// Every complete line of both, in the order they arrived.
    lines: Vec<String>,
    /// Reader threads still reading; 0 once both pipes have closed.
    open: usize,
}

impl CapturedState {
    /// The last lines, for an error message.
    fn tail(&self) -> String {
        let from = self.lines.len().saturating_sub(12);
        self.lines[from..].join("\n  ")
    }
}

impl std::fmt::Debug for HostProcess<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostProcess")
            .field("what", &self.what)
            .field("pid", &self.child.id())
            .finish()
    }
}

impl<'a> HostProcess<'a> {
    fn spawn(mut command: Command, on_line: Option<OnLine>) -> Result<HostProcess<'a>, Error> {
        let what = describe(&command);
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| os_error(format!("could not start `{what}`: {e}")))?;
        let captured = Arc::new(Captured::default());
        captured.lock().open = 2;
        let pipes: [(usize, Option<Box<dyn Read + Send>>); 2] = [
            (0, child.stdout.take().map(|p| Box::new(p) as _)),
            (1, child.stderr.take().map(|p| Box::new(p) as _)),
        ];
        let mut readers = Vec::new();
        for (stream, pipe) in pipes {
            let captured = captured.clone();
            let on_line = on_line.clone();
            let reader = thread::Builder::new()
                .name("sockstep-host-output".into())
                .spawn(move || read_output(pipe, stream, &captured, on_line.as_deref()));
            match reader {
                Ok(reader) => readers.push(reader),
                Err(e) => {
                    // Our own child, by its handle.
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(os_error(format!("could not start a thread: {e}")));
                }
            }
        }
        Ok(HostProcess {
            stdin: child.stdin.take(),
            child,
            captured,
            readers,
            what,
            ended: false,
            _host: PhantomData,
        })
    }

    /// The program's process id (`ip netns exec` became the program).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Writes `bytes` to the program's standard input. It blocks while the
    /// pipe is full and the program is not reading.
    ///
    /// # Errors
    /// [`ErrorKind::Os`] if the program has closed its standard input or
    /// ended, or the input was already closed.
    pub fn write_stdin(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(os_error(format!(
                "the standard input of `{}` is already closed",
                self.what
            )));
        };
        stdin
            .write_all(bytes)
            .and_then(|()| stdin.flush())
            .map_err(|e| os_error(format!("could not write to `{}`: {e}", self.what)))
    }

    /// Closes the program's standard input: the end of its input.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Every complete line the program has printed so far, standard output
    /// and error interleaved in the order they arrived.
    pub fn lines(&self) -> Vec<String> {
        self.captured.lock().lines.clone()
    }

    /// Waits until the program prints a line containing `needle` and returns
    /// that line — or the first such line already printed.
    ///
    /// # Errors
    /// [`ErrorKind::TimedOut`] after `timeout`; [`ErrorKind::Os`] if the
    /// program's output ends without it (it exited: a server that could not
    /// bind, say). Either message ends with the program's last lines.
    pub fn wait_for_line(&self, needle: &str, timeout: Duration) -> Result<String, Error> {
        self.wait_for_line_where(&format!("a line containing {needle:?}"), timeout, |line| {
            line.contains(needle)
        })
    }

    /// As [`HostProcess::wait_for_line`], for the first line that `matches`;
    /// `what` describes it for the error message.
    ///
    /// # Errors
    /// As [`HostProcess::wait_for_line`].
    pub fn wait_for_line_where(
        &self,
        what: &str,
        timeout: Duration,
        matches: impl Fn(&str) -> bool,
    ) -> Result<String, Error> {
        let deadline = Instant::now() + timeout;
        let mut state = self.captured.lock();
        loop {
            if let Some(line) = state.lines.iter().find(|l| matches(l)) {
                return Ok(line.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if state.open == 0 || left.is_zero() {
                let (kind, ended) = if state.open == 0 {
                    (ErrorKind::Os, "ended its output")
                } else {
                    (ErrorKind::TimedOut, "said nothing more")
                };
                return Err(
                    Error::new(Step::Serve, kind).with_io(io::Error::other(format!(
                        "`{}` {ended} without {what}; its last lines:\n  {}",
                        self.what,
                        state.tail()
                    ))),
                );
            }
            state = self
                .captured
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Presses Enter (a newline on standard input — what stops a sockstep
    /// server), then [`HostProcess::finish`]es, allowing 10 s.
    ///
    /// # Errors
    /// As [`HostProcess::finish`].
    pub fn stop(mut self) -> Result<Output, Error> {
        // A program that has already ended cannot read it; finish says how it ended.
        let _ = self.write_stdin(b"\n");
        self.finish(STOP_TIMEOUT)
    }

    /// Closes standard input and waits, at most `timeout`, for the program to
    /// exit; returns its status and everything it printed.
    ///
    /// # Errors
    /// [`ErrorKind::TimedOut`] if it runs over `timeout` — it is killed, and
    /// the message ends with its last lines.
    pub fn finish(mut self, timeout: Duration) -> Result<Output, Error> {
        self.close_stdin();
        let status = self.wait_until(Instant::now() + timeout);
        // Its pipes close when it exits; a grandchild holding them could keep
        // a reader going, so wait for the readers a bounded time only.
        let drained = Instant::now() + Duration::from_secs(2);
        let mut state = self.captured.lock();
        while state.open > 0 && Instant::now() < drained {
            state = self
                .captured
                .changed
                .wait_timeout(state, Duration::from_millis(50))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        let status = status.map_err(|e| match e.kind() {
            ErrorKind::TimedOut => e.with_io(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "`{}` ran over {timeout:?} and was killed; its last lines:\n  {}",
                    self.what,
                    state.tail()
                ),
            )),
            _ => e,
        })?;
        let [stdout, stderr] = std::mem::take(&mut state.streams);
        let all_read = state.open == 0;
        drop(state);
        if all_read {
            for reader in self.readers.drain(..) {
                let _ = reader.join();
            }
        }
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }

    /// Waits for the program until `deadline`, then kills it (`Err`).
    fn wait_until(&mut self, deadline: Instant) -> Result<ExitStatus, Error> {
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.ended = true;
                    return Ok(status);
                }
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
                Ok(None) => {
                    self.kill();
                    return Err(Error::new(Step::Serve, ErrorKind::TimedOut));
                }
                Err(e) => {
                    self.kill();
                    return Err(os_error(format!("could not wait for `{}`: {e}", self.what)));
                }
            }
        }
    }

    fn kill(&mut self) {
        // Our own child, by its handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.ended = true;
    }
}

impl Drop for HostProcess<'_> {
    fn drop(&mut self) {
        if !self.ended {
            self.kill();
        }
    }
}

impl Captured {
    fn lock(&self) -> std::sync::MutexGuard<'_, CapturedState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One reader thread: a pipe to its end, each chunk kept, each line handed to
/// `on_line` first and then published to waiters.
fn read_output(
    pipe: Option<Box<dyn Read + Send>>,
    stream: usize,
    captured: &Captured,
    on_line: Option<&(dyn Fn(&str) + Send + Sync)>,
) {
    let mut partial = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    if let Some(mut pipe) = pipe {
        loop {
            let n = match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            partial.extend_from_slice(&buf[..n]);
            let mut lines = Vec::new();
            while let Some(end) = partial.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = partial.drain(..=end).collect();
                lines.push(text(&line[..end]));
            }
            publish(captured, stream, &buf[..n], lines, on_line);
        }
    }
    let last = (!partial.is_empty()).then(|| text(&partial));
    publish(captured, stream, &[], last.into_iter().collect(), on_line);
    captured.lock().open -= 1;
    captured.changed.notify_all();
}

fn publish(
    captured: &Captured,
    stream: usize,
    bytes: &[u8],
    lines: Vec<String>,
    on_line: Option<&(dyn Fn(&str) + Send + Sync)>,
) {
    if let Some(on_line) = on_line {
        for line in &lines {
            on_line(line);
        }
    }
    let mut state = captured.lock();
    state.streams[stream].extend_from_slice(bytes);
    state.lines.extend(lines);
    drop(state);
    captured.changed.notify_all();
}

/// A line of output as text, without its `\r`.
fn text(line: &[u8]) -> String {
    String::from_utf8_lossy(line)
        .trim_end_matches('\r')
        .to_string()
}

// --- the janitor ------------------------------------------------------------------------

/// The janitor's script: collect the namespaces' names from standard input
/// until it ends, then kill what still runs in them and delete them. Its
/// input ends when the guard drops — or when its owner dies, however it dies.
/// SIGKILL, because the processes are ours, started in namespaces of ours,
/// and one that outlived the namespace would keep its network stack alive.
const JANITOR_SCRIPT: &str = r#"
while read -r ns; do names="$names $ns"; done
for ns in $names; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
done
exit 0
"#;

/// The `sh` process that deletes the namespaces when its input ends.
#[derive(Debug)]
struct Janitor {
    child: Option<Child>,
    names: Option<ChildStdin>,
}

impl Janitor {
    /// Starts it, in a process group of its own. Without `sh` there is no
    /// janitor; the guard's drop and the next run's sweep remain.
    fn start() -> Janitor {
        let path = std::env::var("PATH").unwrap_or_default();
        let mut command = Command::new("sh");
        command
            .args(["-c", JANITOR_SCRIPT, "sockstep-host-janitor"])
            // `ip` lives in sbin, which a PATH may lack.
            .env("PATH", format!("{path}:/usr/sbin:/sbin:/usr/bin:/bin"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Not in our process group: Ctrl-C at a terminal signals the
            // foreground group, and the janitor must outlive it.
            .process_group(0);
        match command.spawn() {
            Ok(mut child) => Janitor {
                names: child.stdin.take(),
                child: Some(child),
            },
            Err(_) => Janitor {
                child: None,
                names: None,
            },
        }
    }

    /// Tells the janitor one more namespace to delete.
    fn watch(&mut self, namespace: &str) {
        if let Some(names) = self.names.as_mut() {
            // A janitor that died cannot be told; the drop and the sweep remain.
            let _ = writeln!(names, "{namespace}");
        }
    }

    /// Ends its input and waits, a bounded time, for it to finish its work.
    fn finish(&mut self) {
        self.names = None;
        let Some(mut child) = self.child.take() else {
            return;
        };
        let deadline = Instant::now() + JANITOR_TIMEOUT;
        while matches!(child.try_wait(), Ok(None)) {
            if Instant::now() >= deadline {
                // Our own child, by its handle.
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Janitor {
    fn drop(&mut self) {
        self.finish();
    }
}

// --- running ip --------------------------------------------------------------------------

/// `ip`, from sbin when the PATH lacks it.
fn ip() -> Command {
    let sbin = ["/usr/sbin/ip", "/sbin/ip"]
        .into_iter()
        .find(|p| Path::new(p).is_file());
    Command::new(sbin.unwrap_or("ip"))
}

/// Runs a short command (an `ip` call) in this namespace and returns its
/// standard output; its failure is an error naming it, with what it said.
fn succeed(command: Command, what: &str) -> Result<String, Error> {
    let output = HostProcess::spawn(command, None)?.finish(RUN_TIMEOUT)?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    Err(os_error(format!(
        "`{what}` failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    )))
}

/// `program arg arg …`, for messages.
fn describe(command: &Command) -> String {
    let mut text = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        let _ = write!(text, " {}", arg.to_string_lossy());
    }
    text
}

/// An error of a command or process the fixture runs.
fn os_error(message: String) -> Error {
    Error::new(Step::Serve, ErrorKind::Os).with_io(io::Error::other(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_rules_match_what_they_say() {
        assert_eq!(Traffic::All.matches(), "");
        assert_eq!(Traffic::Udp { port: 9000 }.matches(), "udp dport 9000 ");
        assert_eq!(
            Traffic::Tcp { port: 7878 }.matches(),
            "tcp dport 7878 tcp flags & syn == 0 "
        );
    }

    #[test]
    fn a_process_outside_any_namespace_is_captured_line_by_line() {
        // `sh` stands in for a program on a host: the capture is the same.
        let mut command = Command::new("sh");
        command.args(["-c", "echo one; echo two >&2; printf 'three'; cat"]);
        let mut process = HostProcess::spawn(command, None).expect("sh runs");
        assert_eq!(
            process
                .wait_for_line("two", Duration::from_secs(5))
                .unwrap(),
            "two"
        );
        process.write_stdin(b"four\n").unwrap();
        let output = process.finish(Duration::from_secs(5)).unwrap();
        assert!(output.status.success());
        assert_eq!(output.stdout, b"one\nthreefour\n");
        assert_eq!(output.stderr, b"two\n");
    }

    #[test]
    fn waiting_for_a_line_that_never_comes_says_what_was_printed() {
        let mut command = Command::new("sh");
        command.args(["-c", "echo nothing to see"]);
        let process = HostProcess::spawn(command, None).unwrap();
        let e = process
            .wait_for_line("listening on", Duration::from_secs(5))
            .unwrap_err();
        assert_eq!(*e.kind(), ErrorKind::Os);
        assert!(e.to_string().contains("nothing to see"), "{e}");
    }
}
