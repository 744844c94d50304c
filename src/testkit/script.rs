//! A scripted server: it plays one side of a conversation, step by step, and
//! says afterwards whether the client played the other side.
//!
//! # The idea
//!
//! An echo or a recorder answers whatever comes. To test how a client handles
//! one exact exchange — a greeting, then a reply cut short, then a reset — the
//! server has to follow a script: *expect these bytes, send those, wait half a
//! second, reset*. Each connection plays the [`Script`] from its first step;
//! a step that cannot be played (the client sent other bytes, or nothing in
//! time) ends that connection's script, and the [`Outcome`] says which step
//! failed and why, with the bytes expected and got side by side:
//!
//! ```text
//! connection 0 from 127.0.0.1:40212: failed at step 1 of 3 (expect b"HELLO\r\n"): the client sent other bytes
//!   expected: b"HELLO\r\n"
//!   got:      b"HELP"
//!                  ^ first difference at byte 3
//! ```
//!
//! The steps ([`ScriptStep`]) are what a server can do to a TCP connection:
//! read ([`expect`](Script::expect), [`expect_line`](Script::expect_line),
//! [`expect_eof`](Script::expect_eof)), write ([`send`](Script::send)), pause
//! ([`wait`](Script::wait)), and end it in each of the three ways TCP has:
//! [`half_close`](Script::half_close) (FIN, and keep reading),
//! [`close`](Script::close) (FIN, done), and [`reset`](Script::reset) (RST).
//!
//! # How each step is played
//!
//! - **Expect** reads no byte beyond the ones it expects (an expected line is
//!   read one byte at a time, up to its `'\n'`). What the script did not ask
//!   for stays in the kernel's receive buffer — which is what makes a reset
//!   possible, below. A step compares as bytes arrive, so a wrong byte fails it
//!   at once rather than after a timeout.
//! - **Every reading step has a timeout**, [`Script::step_timeout`] (default
//!   [`DEFAULT_STEP_TIMEOUT`]); it is also each write's timeout.
//! - **Wait** sleeps, but a guard dropped meanwhile ends the sleep at once, so
//!   shutting down never waits for a long pause to finish.
//! - **Close**, and the end of a script that did not say how to end, are
//!   *gentle*: shutdown(SHUT_WR) sends FIN after everything written, then the
//!   server reads and discards until the client closes too (or a step timeout
//!   passes), so the client reads every byte the script sent.
//! - **Reset** is the abortive close. std cannot ask for one: the usual way,
//!   SO_LINGER with a zero timeout, is `TcpStream::set_linger`, which is still
//!   unstable, and sockstep uses no `unsafe`. But Linux sends RST instead of FIN
//!   whenever a socket is closed while bytes it received sit unread (RFC 2525
//!   §2.17), and Expect never reads past what it expects. So the reset step
//!   waits (within the step timeout) until at least one byte from the client
//!   is unread, then closes: the client gets RST, and `read()` there fails with
//!   "connection reset by peer". **The client must have sent at least one byte
//!   more than the script expected** — typically its request, with no expect
//!   step before the reset. If none arrives, the step fails and says so (the
//!   connection then closes with a plain FIN).
//!
//! # Which connection plays which script
//!
//! [`serve`] gives every connection the same script. [`serve_each`] gives the
//! first connection the first script, the second the second, and so on — the
//! shape of a retry test: the first attempt is reset, the second answered. A
//! connection beyond the list fails at "step 0": the client connected more often
//! than the test expected. Connections are numbered in the order their scripts
//! start, which for a client that connects one attempt after another is the
//! order it connected.
//!
//! ```
//! use sockstep::testkit::script::{self, Script};
//! use std::io::{Read, Write};
//! use std::net::TcpStream;
//! use std::time::Duration;
//!
//! let server = script::serve(Script::new().expect_line("PING").send("PONG\n"))?;
//!
//! let mut client = TcpStream::connect(server.addr())?;
//! client.set_read_timeout(Some(Duration::from_secs(5)))?;
//! client.write_all(b"PING\r\n")?;
//! let mut answer = String::new();
//! client.read_to_string(&mut answer)?; // PONG, then the server's FIN
//! assert_eq!(answer, "PONG\n");
//! server.assert_script_passed();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind};
use crate::step::Step;
use crate::tcp::connection::{Connection, Timeouts};
use crate::tcp::serve::Stats;
use crate::testkit::servers::{
    Options, TcpServer, Watched, close_gently, show_bytes, wait_timed_out,
};

/// The default [`Script::step_timeout`]: far longer than a loopback client
/// takes to send what it was going to send, short enough that a test whose
/// client never sends it fails in seconds.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// How many bytes of the expected and received data a failure shows around the
/// first difference.
const DIFF_WINDOW: usize = 64;

/// One thing the server does on a connection. See the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScriptStep {
    /// Read exactly these bytes; fail on the first byte that differs, at end
    /// of stream, or when they do not all arrive within the step timeout.
    Expect(Vec<u8>),
    /// Read one line and compare it, without its `"\n"` or `"\r\n"`, to these bytes.
    ExpectLine(Vec<u8>),
    /// Read end of stream: the client has closed its writing side (or its socket).
    ExpectEof,
    /// Write these bytes.
    Send(Vec<u8>),
    /// Do nothing for this long (cut short if the server shuts down, which fails the step).
    Wait(Duration),
    /// shutdown(SHUT_WR): send FIN; the client reads end of stream, and the
    /// server can still read what the client sends.
    HalfClose,
    /// End the connection with FIN, gently; the last step.
    Close,
    /// End the connection with RST; the last step. Needs unread bytes from the
    /// client (see the [module docs](self)).
    Reset,
}

impl fmt::Display for ScriptStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScriptStep::Expect(bytes) => write!(f, "expect {}", show_bytes(bytes, 32)),
            ScriptStep::ExpectLine(line) => write!(f, "expect line {}", show_bytes(line, 32)),
            ScriptStep::ExpectEof => f.write_str("expect end of stream"),
            ScriptStep::Send(bytes) => write!(f, "send {}", show_bytes(bytes, 32)),
            ScriptStep::Wait(d) => write!(f, "wait {d:?}"),
            ScriptStep::HalfClose => f.write_str("half-close"),
            ScriptStep::Close => f.write_str("close"),
            ScriptStep::Reset => f.write_str("reset"),
        }
    }
}

/// The steps one connection plays, built in order:
///
/// ```
/// use sockstep::testkit::script::{Script, ScriptStep};
/// use std::time::Duration;
///
/// let script = Script::new()
///     .expect(b"GET / HTTP/1.1\r\n")
///     .send("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel")
///     .wait(Duration::from_millis(50))
///     .send("lo")
///     .close();
/// assert_eq!(script.steps().len(), 5);
/// assert_eq!(script.steps()[4], ScriptStep::Close);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    steps: Vec<ScriptStep>,
    step_timeout: Duration,
}

impl Default for Script {
    fn default() -> Script {
        Script::new()
    }
}

impl Script {
    /// No steps yet: a connection that plays it is closed gently at once.
    pub fn new() -> Script {
        Script {
            steps: Vec::new(),
            step_timeout: DEFAULT_STEP_TIMEOUT,
        }
    }

    /// Then read exactly `bytes` ([`ScriptStep::Expect`]).
    pub fn expect(self, bytes: impl AsRef<[u8]>) -> Script {
        self.then(ScriptStep::Expect(bytes.as_ref().to_vec()))
    }

    /// Then read one line equal to `line` ([`ScriptStep::ExpectLine`]).
    pub fn expect_line(self, line: impl AsRef<[u8]>) -> Script {
        self.then(ScriptStep::ExpectLine(line.as_ref().to_vec()))
    }

    /// Then read end of stream ([`ScriptStep::ExpectEof`]).
    pub fn expect_eof(self) -> Script {
        self.then(ScriptStep::ExpectEof)
    }

    /// Then write `bytes` ([`ScriptStep::Send`]).
    pub fn send(self, bytes: impl AsRef<[u8]>) -> Script {
        self.then(ScriptStep::Send(bytes.as_ref().to_vec()))
    }

    /// Then pause for `duration` ([`ScriptStep::Wait`]).
    pub fn wait(self, duration: Duration) -> Script {
        self.then(ScriptStep::Wait(duration))
    }

    /// Then send FIN and go on reading ([`ScriptStep::HalfClose`]).
    pub fn half_close(self) -> Script {
        self.then(ScriptStep::HalfClose)
    }

    /// Then end with FIN ([`ScriptStep::Close`]).
    pub fn close(self) -> Script {
        self.then(ScriptStep::Close)
    }

    /// Then end with RST ([`ScriptStep::Reset`]).
    pub fn reset(self) -> Script {
        self.then(ScriptStep::Reset)
    }

    /// Then `step`.
    pub fn then(mut self, step: ScriptStep) -> Script {
        self.steps.push(step);
        self
    }

    /// The longest each reading step waits, and each write may block (default
    /// [`DEFAULT_STEP_TIMEOUT`]). Not zero.
    pub fn step_timeout(mut self, timeout: Duration) -> Script {
        self.step_timeout = timeout;
        self
    }

    /// The steps, in order.
    pub fn steps(&self) -> &[ScriptStep] {
        &self.steps
    }

    /// Refuses scripts that could never pass, before any client connects.
    fn check(&self) -> Result<(), Error> {
        let invalid = |why: String| {
            Err(Error::new(
                Step::Serve,
                ErrorKind::InvalidInput(format!("script: {why}")),
            ))
        };
        if self.step_timeout.is_zero() {
            return invalid("the step timeout must not be zero".into());
        }
        for (i, step) in self.steps.iter().enumerate() {
            let last = i + 1 == self.steps.len();
            match step {
                ScriptStep::Close | ScriptStep::Reset if !last => {
                    return invalid(format!(
                        "step {} ({step}) ends the connection, so it must be the last",
                        i + 1
                    ));
                }
                ScriptStep::ExpectLine(line) if line.contains(&b'\n') => {
                    return invalid(format!(
                        "step {} ({step}): a line cannot contain '\\n'",
                        i + 1
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// How one connection's script went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every step was played.
    Passed,
    /// Step `step` (counted from 1; 0 for "before the first") could not be played.
    Failed {
        /// Which step, counted from 1.
        step: usize,
        /// The step, as text: `expect b"PING"`.
        step_text: String,
        /// Why, with the expected and received bytes where that helps.
        why: String,
    },
}

/// The verdict on one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Which connection, counted from 0 in the order their scripts started.
    pub connection: usize,
    /// The client's address.
    pub peer: SocketAddr,
    /// How many steps its script had.
    pub steps: usize,
    /// Passed, or where and why it failed.
    pub verdict: Verdict,
}

impl Outcome {
    /// Whether every step was played.
    pub fn passed(&self) -> bool {
        self.verdict == Verdict::Passed
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "connection {} from {}: ", self.connection, self.peer)?;
        match &self.verdict {
            Verdict::Passed => write!(f, "passed ({} steps)", self.steps),
            Verdict::Failed {
                step,
                step_text,
                why,
            } => write!(
                f,
                "failed at step {step} of {} ({step_text}): {why}",
                self.steps
            ),
        }
    }
}

/// Every connection plays `script`, on `127.0.0.1:0`. See the [module docs](self).
///
/// # Errors
/// As [`Options::scripted`].
pub fn serve(script: Script) -> Result<ScriptedServer, Error> {
    Options::default().scripted(script)
}

/// Connection *k* plays `scripts[k]`, on `127.0.0.1:0`; one more connection fails.
///
/// # Errors
/// As [`Options::scripted_each`].
pub fn serve_each(scripts: Vec<Script>) -> Result<ScriptedServer, Error> {
    Options::default().scripted_each(scripts)
}

impl Options {
    /// A TCP server on which every connection plays `script`.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for a script that could never pass (a step
    /// after `close` or `reset`, a line containing `'\n'`, a zero step timeout);
    /// otherwise as [`Options::tcp_handler`].
    pub fn scripted(&self, script: Script) -> Result<ScriptedServer, Error> {
        self.start_scripts(vec![script], true)
    }

    /// A TCP server on which connection *k* plays `scripts[k]`; a connection
    /// beyond the list fails at step 0 and is closed.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for an empty list, and as [`Options::scripted`].
    pub fn scripted_each(&self, scripts: Vec<Script>) -> Result<ScriptedServer, Error> {
        self.start_scripts(scripts, false)
    }

    fn start_scripts(&self, scripts: Vec<Script>, repeat: bool) -> Result<ScriptedServer, Error> {
        if scripts.is_empty() {
            return Err(Error::new(
                Step::Serve,
                ErrorKind::InvalidInput("script: at least one script is needed".into()),
            ));
        }
        for script in &scripts {
            script.check()?;
        }
        let stop = Arc::new(Watched::new(false));
        let book = Arc::new(Watched::new(OutcomeBook::default()));
        let next = AtomicUsize::new(0);
        let max_kept = self.max_recorded;
        let (handler_stop, handler_book) = (stop.clone(), book.clone());
        let server = self.tcp_handler(move |conn: &mut Connection| {
            let connection = next.fetch_add(1, Ordering::SeqCst);
            let script = if repeat {
                scripts.first()
            } else {
                scripts.get(connection)
            };
            let (verdict, steps, ending) = match script {
                Some(script) => {
                    let (verdict, ending) = play(script, conn, &handler_stop);
                    (verdict, script.steps.len(), ending)
                }
                None => {
                    let why = format!(
                        "no script for connection {connection}: the test gave {} (the client \
                         connected more often than expected)",
                        scripts.len()
                    );
                    let linger = scripts.last().map(|s| s.step_timeout);
                    let failed = Verdict::Failed {
                        step: 0,
                        step_text: "(none)".into(),
                        why,
                    };
                    (failed, 0, Ending::Gentle(linger))
                }
            };
            let outcome = Outcome {
                connection,
                peer: conn.peer_addr(),
                steps,
                verdict,
            };
            handler_book.update(|b| {
                if b.kept.len() < max_kept {
                    b.kept.push(outcome);
                } else {
                    b.not_kept += 1;
                }
            });
            // The verdict is recorded before the connection ends, so a test
            // asserting on it does not wait for the client to close.
            if let Ending::Gentle(linger) = ending {
                close_gently(conn, linger);
            }
            // A reset returns with the client's bytes unread: the server's
            // close(2), right after this, sends RST.
            Ok(())
        })?;
        Ok(ScriptedServer {
            stop: StopOnDrop(stop),
            server,
            book,
            patience: self.io_timeout,
        })
    }
}

#[derive(Debug, Default)]
struct OutcomeBook {
    kept: Vec<Outcome>,
    not_kept: u64,
}

/// Sets the stop flag when dropped, so a script's wait ends at once. It is the
/// first field of [`ScriptedServer`], and fields drop in order: the flag is set
/// before the server's shutdown begins waiting for connections to finish.
#[derive(Debug)]
struct StopOnDrop(Arc<Watched<bool>>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.update(|stop| *stop = true);
    }
}

/// A running scripted TCP server. Dropping it ends any wait in a script, shuts
/// the server down and joins its threads.
#[derive(Debug)]
pub struct ScriptedServer {
    // Must stay the first field: see `StopOnDrop`.
    stop: StopOnDrop,
    server: TcpServer,
    book: Arc<Watched<OutcomeBook>>,
    patience: Duration,
}

impl ScriptedServer {
    /// The address to connect to.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// What the server has done so far: connections accepted, served.
    pub fn stats(&self) -> Stats {
        self.server.stats()
    }

    /// The outcomes of the connections whose scripts have finished, in the
    /// order they finished.
    pub fn outcomes(&self) -> Vec<Outcome> {
        self.book.read(|b| b.kept.clone())
    }

    /// Waits until `count` connections have finished their scripts (passed or
    /// failed), and returns every outcome so far.
    ///
    /// # Errors
    /// [`ErrorKind::TimedOut`] if fewer finished within `timeout`; the error's
    /// text lists the outcomes there were.
    pub fn wait_for_outcomes(
        &self,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<Outcome>, Error> {
        self.book
            .wait_until(timeout, |b| b.kept.len() >= count)
            .map(|b| b.kept.clone())
            .map_err(|b| {
                let what = format!("{count} scripts to finish");
                let seen: Vec<String> = b.kept.iter().map(ToString::to_string).collect();
                wait_timed_out(Step::Read, timeout, &what, &seen)
            })
    }

    /// Panics unless at least one client connected and every connection the
    /// server accepted has played its script to the end. Waits for scripts
    /// still running, up to the options' `io_timeout` (10 s by default).
    ///
    /// # Panics
    /// With every failed outcome's step, reason and byte diff; or, when scripts
    /// did not finish in time, with how many were still running.
    #[track_caller]
    pub fn assert_script_passed(&self) {
        let waited = self.book.wait_until(self.patience, |b| {
            let done = b.kept.len() as u64 + b.not_kept;
            done >= 1 && done >= self.server.stats().accepted
        });
        let timed_out = waited.is_err();
        let outcomes = match waited {
            Ok(b) | Err(b) => b.kept.clone(),
        };
        let failed: Vec<String> = outcomes
            .iter()
            .filter(|o| !o.passed())
            .map(|o| o.to_string())
            .collect();
        if !failed.is_empty() {
            panic!(
                "the scripted server's script failed on {} of {} connections:\n{}",
                failed.len(),
                outcomes.len(),
                failed.join("\n")
            );
        }
        if timed_out {
            let accepted = self.server.stats().accepted;
            if accepted == 0 {
                panic!(
                    "no client connected to the scripted server at {} within {:?}",
                    self.addr(),
                    self.patience
                );
            }
            panic!(
                "after {:?}, {} of the {accepted} connections had finished their scripts \
                 (all passed so far); the others were still running",
                self.patience,
                outcomes.len()
            );
        }
    }

    /// Ends any wait in a script, stops the server, joins its threads, and
    /// returns every outcome (a script cut off by the shutdown fails at the step
    /// it was playing).
    pub fn shutdown(self) -> Vec<Outcome> {
        let ScriptedServer {
            stop, server, book, ..
        } = self;
        drop(stop);
        server.shutdown();
        book.read(|b| b.kept.clone())
    }
}

// ---------------------------------------------------------------------------
// Playing a script on one connection.
// ---------------------------------------------------------------------------

/// How the connection ends once the verdict is in.
enum Ending {
    /// FIN, then read until the client closes or this long passes (`None`: the
    /// read timeout).
    Gentle(Option<Duration>),
    /// Return with the client's bytes unread: RST.
    Abrupt,
}

/// Plays `script` on `conn`, step by step, until one fails or all are played.
fn play(script: &Script, conn: &mut Connection, stop: &Watched<bool>) -> (Verdict, Ending) {
    let timeout = script.step_timeout;
    let gently = Ending::Gentle(Some(timeout));
    let timeouts = Timeouts {
        read: Some(timeout),
        write: Some(timeout),
    };
    if let Err(e) = conn.set_timeouts(timeouts) {
        let failed = Verdict::Failed {
            step: 0,
            step_text: "(setting the step timeout)".into(),
            why: e.summary(),
        };
        return (failed, gently);
    }
    for (i, step) in script.steps.iter().enumerate() {
        let played = match step {
            ScriptStep::Expect(bytes) => expect(conn, bytes, timeout),
            ScriptStep::ExpectLine(line) => expect_line(conn, line, timeout),
            ScriptStep::ExpectEof => expect_eof(conn, timeout),
            ScriptStep::Send(bytes) => conn
                .write_all(bytes)
                .map_err(|e| format!("could not send: {}", e.summary())),
            ScriptStep::Wait(d) => wait(stop, *d),
            ScriptStep::HalfClose => conn
                .shutdown_write()
                .map_err(|e| format!("could not half-close: {}", e.summary())),
            ScriptStep::Close => return (Verdict::Passed, gently),
            ScriptStep::Reset => match unread_byte_arrives(conn, timeouts) {
                Ok(()) => return (Verdict::Passed, Ending::Abrupt),
                Err(why) => Err(why),
            },
        };
        conn.set_deadline(None);
        if let Err(why) = played {
            let failed = Verdict::Failed {
                step: i + 1,
                step_text: step.to_string(),
                why,
            };
            return (failed, gently);
        }
    }
    (Verdict::Passed, gently)
}

/// Reads exactly `expected.len()` bytes — never one more — comparing as they come.
fn expect(conn: &mut Connection, expected: &[u8], timeout: Duration) -> Result<(), String> {
    conn.set_deadline(Some(Instant::now() + timeout));
    let mut got = Vec::with_capacity(expected.len().min(64 * 1024));
    let mut buf = [0u8; 4096];
    while got.len() < expected.len() {
        let want = (expected.len() - got.len()).min(buf.len());
        match conn.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(format!(
                    "the client ended its stream after {} of {} bytes\n{}",
                    got.len(),
                    expected.len(),
                    diff(expected, &got)
                ));
            }
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if !expected.starts_with(&got) {
                    return Err(format!(
                        "the client sent other bytes\n{}",
                        diff(expected, &got)
                    ));
                }
            }
            Err(e) => return Err(read_failed(&e, timeout, &got, expected)),
        }
    }
    Ok(())
}

/// Reads one line, a byte at a time so that nothing after its `'\n'` is taken,
/// and compares it without the line ending.
fn expect_line(conn: &mut Connection, expected: &[u8], timeout: Duration) -> Result<(), String> {
    conn.set_deadline(Some(Instant::now() + timeout));
    let mut got = Vec::with_capacity(expected.len() + 2);
    let mut byte = [0u8; 1];
    loop {
        match conn.read(&mut byte) {
            Ok(0) => {
                return Err(format!(
                    "the client ended its stream before the line's '\\n'\n{}",
                    diff(expected, &got)
                ));
            }
            Ok(_) if byte[0] == b'\n' => {
                let line = got.strip_suffix(b"\r").unwrap_or(&got);
                return if line == expected {
                    Ok(())
                } else {
                    Err(format!(
                        "the client sent another line\n{}",
                        diff(expected, line)
                    ))
                };
            }
            Ok(_) => {
                got.push(byte[0]);
                // Still a possible match: a prefix of the line, or the whole line and its '\r'.
                let possible = expected.starts_with(&got)
                    || got.strip_suffix(b"\r").is_some_and(|g| g == expected);
                if !possible {
                    return Err(format!(
                        "the client sent another line\n{}",
                        diff(expected, &got)
                    ));
                }
            }
            Err(e) => return Err(read_failed(&e, timeout, &got, expected)),
        }
    }
}

/// Reads, expecting end of stream and nothing before it.
fn expect_eof(conn: &mut Connection, timeout: Duration) -> Result<(), String> {
    conn.set_deadline(Some(Instant::now() + timeout));
    let mut buf = [0u8; 256];
    match conn.read(&mut buf) {
        Ok(0) => Ok(()),
        Ok(n) => Err(format!(
            "expected end of stream, but the client sent more: {}",
            show_bytes(&buf[..n], 64)
        )),
        Err(e) if matches!(e.kind(), ErrorKind::TimedOut) => Err(format!(
            "the client did not close its side within {timeout:?}"
        )),
        Err(e) => Err(format!(
            "expected end of stream, but the read failed: {}",
            e.summary()
        )),
    }
}

/// Pauses for `duration`, unless the server stops first.
fn wait(stop: &Watched<bool>, duration: Duration) -> Result<(), String> {
    match stop.wait_until(duration, |stopping| *stopping) {
        Ok(_) => Err("the server shut down during the wait".into()),
        Err(_) => Ok(()),
    }
}

/// Waits until the kernel holds at least one byte from the client that nobody
/// has read, without reading it (recv with MSG_PEEK), so that close(2) sends RST.
fn unread_byte_arrives(conn: &mut Connection, timeouts: Timeouts) -> Result<(), String> {
    let needs = "a reset needs a byte from the client left unread (see testkit::script)";
    // Reset the socket's own read timeout: an earlier read may have shortened it
    // to meet its deadline, and peek is not a read of ours that would restore it.
    conn.set_timeouts(timeouts)
        .map_err(|e| format!("{needs}; setting the timeout failed: {}", e.summary()))?;
    let mut one = [0u8; 1];
    loop {
        return match conn.stream().peek(&mut one) {
            Ok(0) => Err(format!(
                "{needs}, but the client closed its side with none: close(2) sends FIN, not RST"
            )),
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(format!(
                    "{needs}, and none arrived within {:?}: close(2) sends FIN, not RST",
                    timeouts.read.unwrap_or_default()
                ))
            }
            Err(e) => Err(format!("{needs}; peeking failed: {e}")),
        };
    }
}

/// Why a read in an expect step failed, with what had arrived.
fn read_failed(e: &Error, timeout: Duration, got: &[u8], expected: &[u8]) -> String {
    let what = if matches!(e.kind(), ErrorKind::TimedOut) {
        format!("nothing more arrived within {timeout:?}")
    } else {
        format!("the read failed: {}", e.summary())
    };
    format!(
        "{what}, after {} of {} bytes\n{}",
        got.len(),
        expected.len(),
        diff(expected, got)
    )
}

/// Expected and received bytes one above the other, around the first place
/// they differ, with a caret under it.
///
/// ```text
///   expected: b"HELLO\r\n"
///   got:      b"HELP"
///                  ^ first difference at byte 3
/// ```
fn diff(expected: &[u8], got: &[u8]) -> String {
    let common = expected.iter().zip(got).take_while(|(e, g)| e == g).count();
    // Show a window that starts a little before the difference.
    let start = common.saturating_sub(DIFF_WINDOW / 4);
    let window = |bytes: &[u8]| {
        let (from, to) = (
            start.min(bytes.len()),
            (start + DIFF_WINDOW).min(bytes.len()),
        );
        let mut text = if from > 0 {
            "…".to_string()
        } else {
            String::new()
        };
        text.push_str(&show_bytes(&bytes[from..to], usize::MAX));
        if to < bytes.len() {
            text.push('…');
        }
        if from > 0 || to < bytes.len() {
            text.push_str(&format!(" ({} bytes in all)", bytes.len()));
        }
        text
    };
    let (expected_text, got_text) = (window(expected), window(got));
    // The caret goes under the first differing byte: past the label, the
    // ellipsis, the `b"` and the common bytes before it, escaped as shown.
    let before = show_bytes(&expected[start..common], usize::MAX);
    let column = "  expected: ".len() + usize::from(start > 0) + before.len() - 1;
    let note = if common == expected.len() && common == got.len() {
        "the same bytes".to_string()
    } else if common == got.len() {
        format!("got stops at byte {common}")
    } else if common == expected.len() {
        format!("got goes on past byte {common}")
    } else {
        format!("first difference at byte {common}")
    };
    format!(
        "  expected: {expected_text}\n  got:      {got_text}\n{}^ {note}",
        " ".repeat(column)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diff_points_at_the_first_differing_byte() {
        let text = diff(b"HELLO\r\n", b"HELP");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], r#"  expected: b"HELLO\r\n""#);
        assert_eq!(lines[1], r#"  got:      b"HELP""#);
        let caret = lines[2].find('^').expect("a caret");
        assert_eq!(&lines[0][caret..caret + 1], "L", "{text}");
        assert_eq!(&lines[1][caret..caret + 1], "P", "{text}");
        assert!(lines[2].ends_with("first difference at byte 3"), "{text}");
    }

    #[test]
    fn a_diff_counts_escaped_bytes_when_placing_the_caret() {
        let text = diff(b"a\r\nb", b"a\r\nc");
        let lines: Vec<&str> = text.lines().collect();
        let caret = lines[2].find('^').expect("a caret");
        assert_eq!(&lines[0][caret..caret + 1], "b", "{text}");
    }

    #[test]
    fn a_diff_of_long_data_shows_a_window_and_the_total() {
        let expected = vec![b'x'; 1000];
        let mut got = expected.clone();
        got[900] = b'y';
        let text = diff(&expected, &got);
        assert!(text.contains("first difference at byte 900"), "{text}");
        assert!(text.contains("(1000 bytes in all)"), "{text}");
        assert!(text.lines().all(|l| l.len() < 200), "{text}");
        // Columns, not bytes: the leading '…' is one column but three bytes.
        let lines: Vec<Vec<char>> = text.lines().map(|l| l.chars().collect()).collect();
        let caret = lines[2].iter().position(|&c| c == '^').expect("a caret");
        assert_eq!(lines[1][caret], 'y', "{text}");
    }

    #[test]
    fn a_short_read_is_called_so() {
        assert!(diff(b"abc", b"ab").ends_with("got stops at byte 2"));
    }

    #[test]
    fn scripts_that_cannot_pass_are_refused() {
        let after_close = Script::new().close().send("x");
        assert!(after_close.check().is_err());
        assert!(Script::new().expect_line("a\nb").check().is_err());
        assert!(Script::new().step_timeout(Duration::ZERO).check().is_err());
        assert!(Script::new().expect("x").send("y").reset().check().is_ok());
    }
}
