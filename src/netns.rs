//! A network namespace of our own: a second network stack on the same
//! machine, where packets can be dropped and interfaces added without
//! touching anyone else's.
//!
//! # The idea
//!
//! Linux can give one machine several network stacks. Each *network
//! namespace* is a separate one: its own loopback, its own interfaces,
//! addresses, routes and ports, its own counters (`/proc/net` shows the
//! namespace of the process that reads it) and its own firewall. A new one
//! holds a loopback and nothing else, so nothing in it reaches the machine's
//! own network stack (the *root* namespace) unless someone adds an interface
//! that does. A drop rule there, or a port bound there, touches nothing else
//! on the machine.
//!
//! iproute2 handles them by name:
//!
//! - `ip netns add NAME` makes one, pinned by a bind mount at
//!   `/run/netns/NAME`;
//! - `ip netns exec NAME program args…` enters it and then execs the program
//!   in place;
//! - `ip netns del NAME` removes the pin, and the stack goes — its
//!   interfaces and nftables rules with it — once no process runs in it.
//!
//! [`Namespace`] is that triple as a guard: [`Namespace::create`] adds one,
//! [`Namespace::command`] runs a program in it, dropping it deletes it.
//! [`bench::loss`](crate::bench::loss) measures inside one;
//! [`testkit::hosts`](crate::testkit::hosts) joins two with a cable and calls
//! them hosts.
//!
//! # Programs, not threads
//!
//! A thread enters a namespace with setns(2), and std does not wrap it. So
//! code runs in a namespace as a separate program started by `ip netns exec`
//! ([`Namespace::command`]), which has the program's own process id — the
//! same binary again, if the code to run is ours.
//!
//! # One packet, one segment: MTU 1,500, GSO off
//!
//! [`Namespace::create`] sets the namespace's loopback to an Ethernet-sized
//! MTU of 1,500 bytes with GSO off (`gso_max_segs 1`). Both matter for TCP:
//! on a default loopback (MTU 65,536) TCP sends 64 KB at a time, and even at
//! MTU 1,500 the kernel hands the stack "super-packets" of up to 64 KB that
//! are cut into segments only at a real network card — which loopback does
//! not have. An nftables rule sees each super-packet once, so "10 % of
//! packets" would mean 10 % of bursts of up to 45 segments. Measured while
//! building `sockstep bench loss`, 1 MB over TCP with 10 % loss each way:
//! with GSO on the rule dropped 3 data packets of 65 KB each; with it off, 63
//! segments of 1.5 KB. With GSO off a packet is one segment, as on a real
//! link.
//!
//! # Leftovers
//!
//! A namespace outlives the process that made it: a run killed before its
//! `Drop` leaves it behind. So names say whose they are, `PREFIX-PID-N`, and
//! [`Namespace::create`] first deletes the namespaces of its prefix whose
//! process `PID` no longer runs.

use std::env;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind};
use crate::step::Step;

/// The nftables table [`Namespace::create`] makes, family `inet` (IPv4 and IPv6).
pub const NFT_TABLE: &str = "inet sockstep";

/// Its chain, hooked to **input** at priority 0: add drop rules here.
pub const NFT_CHAIN: &str = "input";

/// The longest `ip` or `nft` may take; each finishes in milliseconds.
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// The namespace's loopback MTU: Ethernet's (see the [module docs](self)).
const LINK_MTU: &str = "1500";

/// A network namespace of our own: a separate network stack with its own
/// loopback, interfaces, counters and firewall, so that loss made in it
/// touches nothing else on the machine. Deleted when dropped.
///
/// [`Namespace::create`] brings its loopback up with an MTU of 1,500 and GSO
/// off (so one packet is one segment; see the [module docs](self)), and adds
/// the nftables table [`NFT_TABLE`] with an empty input-hook chain
/// [`NFT_CHAIN`] for drop rules.
///
/// Underneath: `ip netns add NAME`, `ip netns exec NAME …` to run commands
/// in it, `ip netns del NAME` (see the [module docs](self)). Deleting it also
/// deletes its nftables rules.
///
/// # Examples
///
/// Drop 10 % of the UDP packets arriving at port 9000, then run a program
/// that sends to it (as root):
///
/// ```no_run
/// use sockstep::netns::{Namespace, NFT_CHAIN, NFT_TABLE};
///
/// if let Err(why) = Namespace::prerequisites() {
///     eprintln!("skipped: {why}");
///     return Ok(());
/// }
/// let namespace = Namespace::create("demo")?;
/// namespace.nft(&format!(
///     "add rule {NFT_TABLE} {NFT_CHAIN} udp dport 9000 numgen random mod 100 < 10 counter drop\n"
/// ))?;
/// let status = namespace.command("./my-udp-test").status();
/// println!("{status:?}; dropped: {:?}", namespace.counters()?);
/// # Ok::<(), sockstep::Error>(())
/// ```
#[derive(Debug)]
pub struct Namespace {
    name: String,
}

impl Namespace {
    /// Whether this process can make namespaces and drop packets in them:
    /// root, with `ip` (iproute2) and `nft` (nftables) installed. `Err` says
    /// what is missing.
    ///
    /// # Errors
    /// A sentence naming the first thing missing.
    pub fn prerequisites() -> Result<(), String> {
        match effective_uid() {
            Some(0) => {}
            Some(uid) => return Err(format!("not root (uid {uid})")),
            None => return Err("cannot tell the user id from /proc/self/status".into()),
        }
        for (tool, package) in [("ip", "iproute2"), ("nft", "nftables")] {
            if tool_path(tool).is_none() {
                return Err(format!("`{tool}` not found; install {package}"));
            }
        }
        Ok(())
    }

    /// Creates a namespace named `PREFIX-PID-N`, brings up its loopback, and
    /// adds the drop chain. First deletes namespaces `PREFIX-PID-…` whose
    /// process is gone: what a killed run left behind.
    ///
    /// # Errors
    /// [`ErrorKind::Os`] naming the `ip` or `nft` command that failed and what
    /// it printed; [`ErrorKind::TimedOut`] if one hangs. A namespace created
    /// before the failure is deleted again.
    pub fn create(prefix: &str) -> Result<Namespace, Error> {
        remove_stale(prefix);
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run_command(ip().args(["netns", "add", &name]), None)?;
        // From here on, dropping `namespace` deletes it, whatever fails next.
        let namespace = Namespace { name };
        let mut lo = namespace.command(ip_path());
        lo.args(["link", "set", "lo", "up", "mtu", LINK_MTU]).args([
            "gso_max_size",
            LINK_MTU,
            "gso_max_segs",
            "1",
        ]);
        run_command(&mut lo, None)?;
        namespace.nft(&format!(
            "add table {NFT_TABLE}\n\
             add chain {NFT_TABLE} {NFT_CHAIN} {{ type filter hook input priority 0; policy accept; }}\n"
        ))?;
        Ok(namespace)
    }

    /// The namespace's name, as `ip netns list` shows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs `program` inside the namespace: `ip netns exec NAME
    /// program`. `ip` execs the program in place, so the child's process id
    /// is the program's own.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = ip();
        command
            .args(["netns", "exec", &self.name])
            .arg(program.as_ref());
        command
    }

    /// Runs an nftables script inside the namespace (`nft -f -`, the script
    /// on its standard input) and returns what `nft` printed.
    ///
    /// # Errors
    /// [`ErrorKind::Os`] with `nft`'s complaint when the script is refused.
    pub fn nft(&self, script: &str) -> Result<String, Error> {
        let nft = tool_path("nft").unwrap_or_else(|| PathBuf::from("nft"));
        run_command(self.command(nft).args(["-f", "-"]), Some(script))
    }

    /// Every rule of [`NFT_CHAIN`] that has a `counter`, with the packets it
    /// counted: (the rule as `nft` prints it, packets).
    ///
    /// # Errors
    /// As [`Namespace::nft`].
    pub fn counters(&self) -> Result<Vec<(String, u64)>, Error> {
        let listing = self.nft(&format!("list chain {NFT_TABLE} {NFT_CHAIN}\n"))?;
        Ok(listing
            .lines()
            .filter_map(|line| {
                let (_, after) = line.split_once("counter packets ")?;
                let packets = after.split_whitespace().next()?.parse().ok()?;
                Some((line.trim().to_string(), packets))
            })
            .collect())
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // Nothing to do if this fails; the next run removes it as stale.
        let _ = run_command(ip().args(["netns", "del", &self.name]), None);
    }
}

/// Deletes namespaces named `PREFIX-PID-…` whose process no longer runs.
fn remove_stale(prefix: &str) {
    let Ok(list) = run_command(ip().args(["netns", "list"]), None) else {
        return;
    };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = name
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = run_command(ip().args(["netns", "del", name]), None);
        }
    }
}

// --- running ip, nft and the programs in a namespace ------------------------------------
//
// `bench::loss` runs its worker with these too: one way to start a program,
// wait for it with a deadline, and say what went wrong.

/// Where a system tool is: on `PATH`, or in the sbin directories that a
/// non-root `PATH` often lacks.
pub(crate) fn tool_path(tool: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
}

/// `ip`'s path, or plain `ip` for `PATH` to find (and the error to name).
fn ip_path() -> PathBuf {
    tool_path("ip").unwrap_or_else(|| PathBuf::from("ip"))
}

/// A command that runs `ip`, in this process's own namespace.
pub(crate) fn ip() -> Command {
    Command::new(ip_path())
}

/// The effective user id, from `/proc/self/status` (`Uid: real effective saved fs`).
fn effective_uid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Runs a command to completion within [`COMMAND_TIMEOUT`], `stdin` on its
/// standard input, and returns its standard output.
pub(crate) fn run_command(command: &mut Command, stdin: Option<&str>) -> Result<String, Error> {
    let what = describe(command);
    let mut child = command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| tool_error(format!("start `{what}`"), e))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A script of a few lines fits the pipe's buffer; the child reads it all.
        pipe.write_all(text.as_bytes())
            .map_err(|e| tool_error(format!("write to `{what}`"), e))?;
    }
    let stdout = collect(child.stdout.take());
    let stderr = collect(child.stderr.take());
    let status = wait_until(&mut child, Instant::now() + COMMAND_TIMEOUT)
        .map_err(|e| e.with_io(io::Error::other(format!("`{what}` did not finish"))))?;
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    if status.success() {
        Ok(stdout)
    } else {
        Err(tool_error(
            format!("run `{what}`"),
            io::Error::other(format!("it exited with {status}: {}", tail(&stderr, 500))),
        ))
    }
}

/// Reads a pipe to its end on a thread of its own, so that a child writing a
/// lot to one pipe never blocks while we wait on the other.
pub(crate) fn collect(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        text
    })
}

/// Waits for our child until `deadline`, then kills it.
pub(crate) fn wait_until(child: &mut Child, deadline: Instant) -> Result<ExitStatus, Error> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::new(Step::Serve, ErrorKind::TimedOut));
            }
            Ok(None) => thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(tool_error("wait for a child process".into(), e)),
        }
    }
}

/// `program arg arg …`, for messages.
pub(crate) fn describe(command: &Command) -> String {
    let mut text = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// An error of a tool or process we run: what it was doing, and why it failed.
pub(crate) fn tool_error(doing: String, e: io::Error) -> Error {
    Error::new(Step::Serve, ErrorKind::Os)
        .with_io(io::Error::new(e.kind(), format!("could not {doing}: {e}")))
}

/// The last `max` bytes of `text` (at a character boundary), trimmed.
pub(crate) fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].trim()
}
