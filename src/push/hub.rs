//! The hub: members, their bounded queues, one total order — and no sockets.
//!
//! A [`Hub`] is where the kept connections meet. Each connection becomes a
//! [`Member`] ([`Hub::join`]); a member that has [subscribed](Member::subscribe)
//! receives every [`Message`] published after that, by any member
//! ([`Member::publish`]) or by the hub itself (the clock's `Tick`s,
//! [`Hub::announce`]).
//!
//! # What it keeps true
//!
//! - **One order for everyone.** [`Member::publish`] numbers the message and puts
//!   it into every subscriber's queue while holding the hub's one lock, so the
//!   sequence numbers are the order, every subscriber sees the messages in it,
//!   and so each publisher's messages arrive in the order they were published.
//! - **A publisher never waits for a reader.** Every member's queue is bounded
//!   ([`HubConfig::queue`]). A member whose queue is full when a message comes is
//!   cut loose on the spot — [`Leave::Slow`] — its queue is thrown away, and its
//!   transport is told to close ([`Member::on_close`]). The alternatives are
//!   worse: waiting would let one stalled phone stall the whole room, and an
//!   unbounded queue would let it eat the server's memory instead.
//! - **Every leaving is counted, with its reason** ([`Stats::left`]), and every
//!   copy of a message is accounted for: handed out, dropped at a slow member,
//!   or discarded at some other cut ([`Stats`]).
//!
//! # What a transport does
//!
//! The hub knows nothing of sockets; a transport (the line protocol over TCP in
//! [`super::serve`], a WebSocket later) needs only two loops per member:
//!
//! - a **reader** that turns what arrives into [`Member::subscribe`],
//!   [`Member::publish`], [`Member::reply`] and finally [`Member::leave`],
//!   waiting for room in its own queue first ([`Member::wait_for_room`]);
//! - a **writer** that takes [`Member::next`] until it says
//!   [`Next::Closed`], and writes each message out.
//!
//! ```
//! use sockstep::push::hub::{Hub, HubConfig, Kind, Leave, Next};
//! use std::time::Duration;
//!
//! let hub = Hub::new(HubConfig::default())?;
//! let alice = hub.join("alice")?;
//! let bob = hub.join("bob")?;
//! bob.subscribe("OK SUB");
//! alice.publish("hello");
//! let Next::Message(ack) = bob.next(Duration::from_secs(1)) else { panic!() };
//! assert_eq!((ack.kind, &*ack.text), (Kind::Reply, "OK SUB"));
//! let Next::Message(msg) = bob.next(Duration::from_secs(1)) else { panic!() };
//! assert_eq!((msg.kind, msg.from, &*msg.text), (Kind::Msg, Some(alice.id()), "hello"));
//! bob.leave(Leave::Quit);
//! assert_eq!(bob.next(Duration::ZERO), Next::Closed(Leave::Quit));
//! assert_eq!(hub.shutdown().left.quit, 1);
//! # Ok::<(), sockstep::Error>(())
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::{Error, ErrorKind};
use crate::step::Step;

/// How many messages wait for one member by default before it counts as too
/// slow: a few seconds of a busy chat, a few minutes of a clock ticking every
/// second. Each waiting message is a pointer to one shared copy, so a full
/// queue costs a few kilobytes, not a copy of every text.
pub const DEFAULT_QUEUE: usize = 256;

/// The largest queue a member may be given: 65,536 waiting messages, about
/// 2.5 MB of queue per member, before the texts themselves.
pub const MAX_QUEUE: usize = 65_536;

/// Members at once by default. A thread-per-connection transport runs two
/// threads per member, so this is 2,000 threads: well inside the process's
/// limits, and more people than a single room of chat keeps up with.
pub const DEFAULT_MAX_MEMBERS: usize = 1_000;

/// The most members a hub may be configured for. The line transport runs two
/// threads per member (one reads, one writes), and a few more for turning
/// clients away; all of them must stay under
/// [`MAX_CONNECTIONS_CEILING`](crate::tcp::serve::MAX_CONNECTIONS_CEILING)
/// (10,000), since past about 16,000 threads a process here aborts.
pub const MAX_MEMBERS_CEILING: usize = 4_096;

/// The shortest interval between clock ticks. Below a millisecond the clock
/// would be a busy loop that fills every queue, not a clock.
pub const MIN_TICK: Duration = Duration::from_millis(1);

/// How a [`Hub`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubConfig {
    /// Messages that may wait for one member (1 ..= [`MAX_QUEUE`]). Replies to
    /// a member's own commands wait in the same queue and count too.
    pub queue: usize,
    /// Members at once (1 ..= [`MAX_MEMBERS_CEILING`]); one more is refused.
    pub max_members: usize,
    /// Publish a `Tick` this often, from a clock thread of the hub's own;
    /// `None` for no clock (at least [`MIN_TICK`]).
    pub tick: Option<Duration>,
}

impl Default for HubConfig {
    fn default() -> HubConfig {
        HubConfig {
            queue: DEFAULT_QUEUE,
            max_members: DEFAULT_MAX_MEMBERS,
            tick: None,
        }
    }
}

/// A member's number in its hub: 1 for the first to join, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId(pub u64);

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What kind of message it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Published by a member ([`Member::publish`]).
    Msg,
    /// Published by the hub's clock; the text is the time in milliseconds
    /// since 1970 (Unix time).
    Tick,
    /// Published by the server itself ([`Hub::announce`]).
    System,
    /// For one member only: an answer to its own command ([`Member::reply`],
    /// [`Member::subscribe`]). Not published: it takes no sequence number of
    /// its own and is not counted in [`Stats`].
    Reply,
}

/// One message, as a member receives it.
///
/// The text is shared: a message published to a thousand members is one
/// allocation and a thousand pointers to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its place in the hub's one order: 1 for the first message published,
    /// then 2, 3, … with no gaps. A [`Kind::Reply`] carries the number of the
    /// last message published before it, so a reply to `SUB` says where the
    /// subscription starts.
    pub seq: u64,
    /// Who or what it comes from.
    pub kind: Kind,
    /// The member that published it, for [`Kind::Msg`].
    pub from: Option<MemberId>,
    /// What it says.
    pub text: Arc<str>,
}

/// Why a member left. Each becomes one count in [`Left`], and its `Display` is
/// the reason a transport gives the client (`BYE too slow: queue of 256 full`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Leave {
    /// The member asked to go (`QUIT`).
    Quit,
    /// The peer closed its side: end of stream.
    Eof,
    /// The peer aborted the connection (ECONNRESET).
    Reset,
    /// The peer sent nothing, or took nothing, for longer than the timeout.
    Timeout,
    /// Its queue was full when a message came: the hub cut it loose.
    Slow {
        /// The queue size it could not keep within.
        queue: usize,
    },
    /// The hub shut down.
    Shutdown,
    /// Anything else: a broken protocol rule, a failed write, a handle dropped.
    Error(String),
}

impl Leave {
    /// Whether the member chose to go (`Quit`, `Eof`): it still gets what was
    /// already queued for it. A member cut loose for any other reason gets
    /// nothing more; what was queued is discarded (and counted).
    pub fn is_voluntary(&self) -> bool {
        matches!(self, Leave::Quit | Leave::Eof)
    }

    /// Whether the hub itself ended the membership (`Slow`, `Shutdown`): the
    /// only cases in which the member's [`on_close`](Member::on_close) hook runs,
    /// because only then does the transport not know yet.
    pub fn is_cut_by_hub(&self) -> bool {
        matches!(self, Leave::Slow { .. } | Leave::Shutdown)
    }
}

impl fmt::Display for Leave {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Leave::Quit => f.write_str("quit"),
            Leave::Eof => f.write_str("end of stream"),
            Leave::Reset => f.write_str("connection reset"),
            Leave::Timeout => f.write_str("timed out"),
            Leave::Slow { queue } => write!(f, "too slow: queue of {queue} full"),
            Leave::Shutdown => f.write_str("server shutting down"),
            Leave::Error(why) => f.write_str(why),
        }
    }
}

/// Members that left, counted by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Left {
    /// [`Leave::Quit`].
    pub quit: u64,
    /// [`Leave::Eof`].
    pub eof: u64,
    /// [`Leave::Reset`].
    pub reset: u64,
    /// [`Leave::Timeout`].
    pub timeout: u64,
    /// [`Leave::Slow`].
    pub slow: u64,
    /// [`Leave::Shutdown`].
    pub shutdown: u64,
    /// [`Leave::Error`].
    pub error: u64,
}

impl Left {
    /// Every member that left, whatever the reason.
    pub fn total(&self) -> u64 {
        self.quit + self.eof + self.reset + self.timeout + self.slow + self.shutdown + self.error
    }

    fn count(&mut self, reason: &Leave) {
        *match reason {
            Leave::Quit => &mut self.quit,
            Leave::Eof => &mut self.eof,
            Leave::Reset => &mut self.reset,
            Leave::Timeout => &mut self.timeout,
            Leave::Slow { .. } => &mut self.slow,
            Leave::Shutdown => &mut self.shutdown,
            Leave::Error(_) => &mut self.error,
        } += 1;
    }
}

/// What a hub did, counted. A snapshot; see [`Hub::stats`].
///
/// Every copy of a published message is accounted for: once all members are
/// gone, `fanned_out == delivered + dropped_slow + discarded`. (While members
/// remain, the difference is what waits in their queues.)
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Members now.
    pub members: usize,
    /// Of those, subscribed now.
    pub subscribers: usize,
    /// Members that ever joined.
    pub joined: u64,
    /// Joins refused: the hub was full or shut down.
    pub refused: u64,
    /// Members that left, by reason.
    pub left: Left,
    /// Messages published: by members, by the clock and by [`Hub::announce`].
    pub published: u64,
    /// Copies of published messages addressed to subscribers (one per
    /// subscriber per message).
    pub fanned_out: u64,
    /// Copies a transport took from a queue ([`Member::next`], [`Member::try_next`]).
    pub delivered: u64,
    /// Copies lost to slowness: the one that found a queue full, and the rest
    /// of that queue, thrown away with it.
    pub dropped_slow: u64,
    /// Copies thrown away when a member was cut for another reason (reset,
    /// timeout, shutdown, …) before its transport took them.
    pub discarded: u64,
}

/// Something that happened to the membership, for a watcher ([`Hub::watch`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubEvent {
    /// A member joined.
    Joined {
        /// Its number.
        id: MemberId,
        /// The name it joined with.
        name: String,
    },
    /// A member left.
    Left {
        /// Its number.
        id: MemberId,
        /// The name it joined with.
        name: String,
        /// Why.
        reason: Leave,
    },
    /// A join was refused.
    Refused {
        /// The name it tried to join with.
        name: String,
        /// Why, as told to the client.
        reason: String,
    },
}

/// What [`Member::next`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// The next message in this member's queue.
    Message(Message),
    /// Nothing arrived within the timeout; the member is still in.
    Idle,
    /// The member has left, for this reason, and its queue is empty: write a
    /// goodbye if the transport has one, and close.
    Closed(Leave),
}

type Watcher = dyn Fn(&HubEvent) + Send + Sync;
type Waker = dyn Fn(&Leave) + Send + Sync;

/// The meeting point of kept connections. Cheap to clone: every clone is the
/// same hub. See the [module docs](self).
#[derive(Clone)]
pub struct Hub {
    shared: Arc<Shared>,
}

struct Shared {
    config: HubConfig,
    state: Mutex<State>,
    // Counted by the members' writers, outside the hub's lock, so taking a
    // message never waits for a publish in progress.
    delivered: AtomicU64,
    clock: Arc<Clock>,
    ticker: Mutex<Option<JoinHandle<()>>>,
    watcher: Mutex<Option<Arc<Watcher>>>,
}

/// Everything a publish must see at one instant, under one lock.
#[derive(Default)]
struct State {
    open: bool,
    next_id: u64,
    seq: u64,
    // Ordered by id, so a publish fills queues in the order members joined:
    // not needed for correctness, but it makes runs repeatable.
    members: BTreeMap<u64, Slot>,
    stats: Stats,
}

struct Slot {
    name: Arc<str>,
    subscribed: bool,
    mailbox: Arc<Mailbox>,
}

/// One member's queue, with its own lock so that a writer taking messages
/// contends with publishers only for its own queue, never for the hub.
/// Lock order: the hub's `state`, then a mailbox — never the other way.
#[derive(Default)]
struct Mailbox {
    inbox: Mutex<Inbox>,
    // Signalled when a message arrives, for the writer.
    ready: Condvar,
    // Signalled when a message is taken, for a reader waiting for room.
    room: Condvar,
    waker: Mutex<Option<Arc<Waker>>>,
}

#[derive(Default)]
struct Inbox {
    queue: VecDeque<Message>,
    closed: Option<Leave>,
    // Threads inside `next`, so a publish wakes the condvar only when someone
    // waits on it: std's notify is a system call even when nobody does.
    waiters: usize,
    // Threads inside `wait_for_room`, likewise.
    room_waiters: usize,
}

impl Mailbox {
    fn inbox(&self) -> MutexGuard<'_, Inbox> {
        // Nothing runs user code under this lock; a poison can only come from
        // an allocation failure, and the queue is still a valid queue.
        self.inbox.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, inbox: &mut Inbox, message: Message) {
        inbox.queue.push_back(message);
        if inbox.waiters > 0 {
            self.ready.notify_all();
        }
    }

    fn pop(&self, inbox: &mut Inbox) -> Option<Message> {
        let message = inbox.queue.pop_front()?;
        if inbox.room_waiters > 0 {
            self.room.notify_all();
        }
        Some(message)
    }
}

/// Copies of published messages among `queue`: replies are not counted anywhere.
fn published_in(queue: &VecDeque<Message>) -> u64 {
    queue.iter().filter(|m| m.kind != Kind::Reply).count() as u64
}

/// A member that was just removed, and what must happen outside the lock.
struct Removed {
    id: MemberId,
    name: Arc<str>,
    reason: Leave,
    waker: Option<Arc<Waker>>,
}

impl Hub {
    /// A hub with no members yet, and its clock running if `config.tick` asks.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] when a setting is out of range; the OS error
    /// when the clock thread cannot be started.
    pub fn new(config: HubConfig) -> Result<Hub, Error> {
        let invalid = |why: String| Err(Error::new(Step::Serve, ErrorKind::InvalidInput(why)));
        if !(1..=MAX_QUEUE).contains(&config.queue) {
            return invalid(format!(
                "a member's queue must hold 1..={MAX_QUEUE} messages, not {}",
                config.queue
            ));
        }
        if !(1..=MAX_MEMBERS_CEILING).contains(&config.max_members) {
            return invalid(format!(
                "max_members must be 1..={MAX_MEMBERS_CEILING}, not {}",
                config.max_members
            ));
        }
        if config.tick.is_some_and(|t| t < MIN_TICK) {
            return invalid(format!(
                "the tick must be at least {MIN_TICK:?}, not {:?}",
                config.tick.unwrap_or_default()
            ));
        }
        let clock = Arc::new(Clock::default());
        let shared = Arc::new(Shared {
            config,
            state: Mutex::new(State {
                open: true,
                next_id: 1,
                ..State::default()
            }),
            delivered: AtomicU64::new(0),
            clock: clock.clone(),
            ticker: Mutex::new(None),
            watcher: Mutex::new(None),
        });
        if let Some(every) = config.tick {
            // The clock holds the hub weakly: a hub nobody refers to any more
            // stops its clock instead of being kept alive by it.
            let hub = Arc::downgrade(&shared);
            let ticker = thread::Builder::new()
                .name("sockstep-push-tick".into())
                .spawn(move || run_clock(&hub, &clock, every))
                .map_err(|e| Error::io(Step::Serve, e))?;
            *lock(&shared.ticker) = Some(ticker);
        }
        Ok(Hub { shared })
    }

    /// The settings it runs with.
    pub fn config(&self) -> HubConfig {
        self.shared.config
    }

    /// Calls `watcher` for every join, leave and refusal from now on (replacing
    /// any earlier watcher). It runs on the thread that caused the event — a
    /// publisher's, when a slow member is cut — after the hub's lock is
    /// released, so it may call the hub; it should not block for long.
    pub fn watch(&self, watcher: impl Fn(&HubEvent) + Send + Sync + 'static) {
        *lock(&self.shared.watcher) = Some(Arc::new(watcher));
    }

    /// Adds a member called `name` (for people: an address, a nickname). It is
    /// not subscribed yet; it may publish at once.
    ///
    /// # Errors
    /// [`ErrorKind::RefusedByServer`] with the reason when the hub already has
    /// [`max_members`](HubConfig::max_members) or has shut down.
    pub fn join(&self, name: &str) -> Result<Member, Error> {
        let joined = {
            let mut state = self.shared.state();
            if !state.open {
                Err("the hub has shut down".to_string())
            } else if state.members.len() >= self.shared.config.max_members {
                Err(format!("hub full ({} members)", state.members.len()))
            } else {
                let id = state.next_id;
                state.next_id += 1;
                state.stats.joined += 1;
                let mailbox = Arc::new(Mailbox::default());
                let name: Arc<str> = name.into();
                state.members.insert(
                    id,
                    Slot {
                        name: name.clone(),
                        subscribed: false,
                        mailbox: mailbox.clone(),
                    },
                );
                Ok((MemberId(id), name, mailbox))
            }
        };
        match joined {
            Ok((id, name, mailbox)) => {
                self.shared.tell(|| HubEvent::Joined {
                    id,
                    name: name.to_string(),
                });
                Ok(Member {
                    inner: Arc::new(MemberInner {
                        id,
                        name,
                        mailbox,
                        hub: self.shared.clone(),
                    }),
                })
            }
            Err(reason) => {
                self.shared.state().stats.refused += 1;
                self.shared.tell(|| HubEvent::Refused {
                    name: name.to_string(),
                    reason: reason.clone(),
                });
                Err(Error::new(Step::Serve, ErrorKind::RefusedByServer(reason)))
            }
        }
    }

    /// Publishes `text` from the server itself ([`Kind::System`]) to every
    /// subscriber, and returns its sequence number.
    pub fn announce(&self, text: &str) -> u64 {
        self.shared.publish(Kind::System, None, text.into())
    }

    /// The counts so far.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Stops the hub: stops its clock and joins the clock's thread, cuts every
    /// member loose with [`Leave::Shutdown`] (their transports are told through
    /// [`Member::on_close`]), and refuses joins from now on. Calling it again
    /// does nothing more; it returns the counts either way.
    pub fn shutdown(&self) -> Stats {
        self.shared.clock.stop();
        let ticker = lock(&self.shared.ticker).take();
        if let Some(ticker) = ticker {
            // The clock's own thread cannot join itself (a watcher calling
            // shutdown on a tick); it is stopped and returns by itself.
            if ticker.thread().id() != thread::current().id() {
                let _ = ticker.join();
            }
        }
        let removed: Vec<Removed> = {
            let mut state = self.shared.state();
            state.open = false;
            let ids: Vec<u64> = state.members.keys().copied().collect();
            ids.into_iter()
                .filter_map(|id| state.remove(id, Leave::Shutdown))
                .collect()
        };
        for r in removed {
            self.shared.finish(r);
        }
        self.stats()
    }
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("config", &self.shared.config)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // Watchers and wakers run outside this lock, so a poison means a bug in
        // this file; the counters and queues are still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn stats(&self) -> Stats {
        let state = self.state();
        Stats {
            members: state.members.len(),
            subscribers: state.members.values().filter(|s| s.subscribed).count(),
            delivered: self.delivered.load(Ordering::Relaxed),
            ..state.stats
        }
    }

    /// Numbers the message and queues it for every subscriber, all under the
    /// hub's lock: this is where the one total order is made. Members whose
    /// queue is full are cut loose after the loop, still under the lock, and
    /// told outside it.
    fn publish(&self, kind: Kind, from: Option<MemberId>, text: Arc<str>) -> u64 {
        let (seq, removed) = {
            let mut state = self.state();
            let State {
                seq,
                members,
                stats,
                ..
            } = &mut *state;
            *seq += 1;
            stats.published += 1;
            let message = Message {
                seq: *seq,
                kind,
                from,
                text,
            };
            let capacity = self.config.queue;
            let mut full = Vec::new();
            for (&id, slot) in members.iter().filter(|(_, s)| s.subscribed) {
                stats.fanned_out += 1;
                let mut inbox = slot.mailbox.inbox();
                if inbox.queue.len() < capacity {
                    slot.mailbox.push(&mut inbox, message.clone());
                } else {
                    full.push(id);
                }
            }
            // The copy that found the queue full is lost with the queue.
            stats.dropped_slow += full.len() as u64;
            let removed: Vec<Removed> = full
                .into_iter()
                .filter_map(|id| state.remove(id, Leave::Slow { queue: capacity }))
                .collect();
            (state.seq, removed)
        };
        for r in removed {
            self.finish(r);
        }
        seq
    }

    /// After a removal, outside the lock: wake the transport if the hub made
    /// the decision, and tell the watcher.
    fn finish(&self, removed: Removed) {
        let Removed {
            id,
            name,
            reason,
            waker,
        } = removed;
        if let Some(waker) = waker.filter(|_| reason.is_cut_by_hub()) {
            waker(&reason);
        }
        self.tell(|| HubEvent::Left {
            id,
            name: name.to_string(),
            reason,
        });
    }

    fn tell(&self, event: impl FnOnce() -> HubEvent) {
        let watcher = lock(&self.watcher).clone();
        if let Some(watcher) = watcher {
            watcher(&event());
        }
    }

    fn tick(&self) {
        // Before 1970 only on a badly set clock; 0 says so plainly.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        self.publish(Kind::Tick, None, now.to_string().into());
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Nobody can reach the hub any more; its clock must not tick on alone.
        self.clock.stop();
    }
}

impl State {
    /// Takes member `id` out of the hub with `reason`, closes its queue (keeping
    /// what waits in it only for a member that chose to go) and counts it.
    /// `None` when it had already left.
    fn remove(&mut self, id: u64, reason: Leave) -> Option<Removed> {
        let slot = self.members.remove(&id)?;
        self.stats.left.count(&reason);
        {
            let mut inbox = slot.mailbox.inbox();
            if !reason.is_voluntary() {
                let thrown = published_in(&inbox.queue);
                if matches!(reason, Leave::Slow { .. }) {
                    self.stats.dropped_slow += thrown;
                } else {
                    self.stats.discarded += thrown;
                }
                inbox.queue.clear();
            }
            inbox.closed = Some(reason.clone());
            if inbox.waiters > 0 {
                slot.mailbox.ready.notify_all();
            }
            if inbox.room_waiters > 0 {
                slot.mailbox.room.notify_all();
            }
        }
        // Taken, so whatever the waker holds (a socket) is let go now.
        let waker = lock(&slot.mailbox.waker).take();
        Some(Removed {
            id: MemberId(id),
            name: slot.name,
            reason,
            waker,
        })
    }
}

/// One connection's place in a [`Hub`]. Clone it to give the reading and the
/// writing side of a transport a handle each; both are the same member.
///
/// Dropping the last handle of a member that has not left makes it leave with
/// [`Leave::Error`], so a transport that forgets cannot leave a ghost behind
/// that keeps receiving.
#[derive(Clone)]
pub struct Member {
    inner: Arc<MemberInner>,
}

struct MemberInner {
    id: MemberId,
    name: Arc<str>,
    mailbox: Arc<Mailbox>,
    hub: Arc<Shared>,
}

impl Member {
    /// Its number in the hub.
    pub fn id(&self) -> MemberId {
        self.inner.id
    }

    /// The name it joined with.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Starts receiving everything published from now on, and puts `ack` in
    /// its own queue ([`Kind::Reply`]) in the same step, so the ack is the
    /// boundary: whatever comes after it was published after the subscription.
    /// Subscribing twice is harmless (the ack comes again).
    ///
    /// Returns `false` if the member has already left.
    pub fn subscribe(&self, ack: &str) -> bool {
        self.set_subscribed(true, ack)
    }

    /// Stops receiving published messages (replies still come), with `ack` as
    /// the boundary as for [`subscribe`](Member::subscribe).
    ///
    /// Returns `false` if the member has already left.
    pub fn unsubscribe(&self, ack: &str) -> bool {
        self.set_subscribed(false, ack)
    }

    fn set_subscribed(&self, on: bool, ack: &str) -> bool {
        let mut state = self.inner.hub.state();
        let Some(slot) = state.members.get_mut(&self.inner.id.0) else {
            return false;
        };
        slot.subscribed = on;
        self.reply_locked(state, ack)
    }

    /// Publishes `text` from this member ([`Kind::Msg`]) to every subscriber —
    /// itself too, if subscribed — and returns its sequence number.
    ///
    /// Returns `None`, publishing nothing, if the member has already left.
    pub fn publish(&self, text: &str) -> Option<u64> {
        let shared = &self.inner.hub;
        if self.left().is_some() {
            return None;
        }
        // Between this check and the publish the member may be cut; its
        // message then still goes out, as one sent just before the cut would.
        Some(shared.publish(Kind::Msg, Some(self.inner.id), text.into()))
    }

    /// Puts `text` in this member's own queue, after everything already there
    /// ([`Kind::Reply`]): an answer to a command, kept in order with what is
    /// pushed. A full queue makes the member too slow, as a publish would.
    ///
    /// Returns `false` if the member has left (or just did, for slowness).
    pub fn reply(&self, text: &str) -> bool {
        let state = self.inner.hub.state();
        self.reply_locked(state, text)
    }

    fn reply_locked(&self, mut state: MutexGuard<'_, State>, text: &str) -> bool {
        let id = self.inner.id.0;
        let Some(slot) = state.members.get(&id) else {
            return false;
        };
        let capacity = self.inner.hub.config.queue;
        {
            let mut inbox = slot.mailbox.inbox();
            if inbox.queue.len() < capacity {
                let reply = Message {
                    seq: state.seq,
                    kind: Kind::Reply,
                    from: None,
                    text: text.into(),
                };
                slot.mailbox.push(&mut inbox, reply);
                return true;
            }
        }
        let removed = state.remove(id, Leave::Slow { queue: capacity });
        drop(state);
        if let Some(r) = removed {
            self.inner.hub.finish(r);
        }
        false
    }

    /// The next message for this member, waiting up to `timeout` for one: what
    /// a transport's writer loops on.
    ///
    /// After the member has left, the queue is still handed out if it left by
    /// choice ([`Leave::is_voluntary`]), then every call returns
    /// [`Next::Closed`] with the reason.
    pub fn next(&self, timeout: Duration) -> Next {
        let mailbox = &self.inner.mailbox;
        // A timeout too large for the clock waits as long as it takes.
        let deadline = Instant::now().checked_add(timeout);
        let mut inbox = mailbox.inbox();
        loop {
            if let Some(message) = mailbox.pop(&mut inbox) {
                self.count_delivered(&message);
                return Next::Message(message);
            }
            if let Some(reason) = &inbox.closed {
                return Next::Closed(reason.clone());
            }
            let wait = match deadline {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                None => Duration::MAX,
            };
            if wait.is_zero() {
                return Next::Idle;
            }
            inbox.waiters += 1;
            inbox = mailbox
                .ready
                .wait_timeout(inbox, wait)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            inbox.waiters -= 1;
        }
    }

    /// The next message if one is already queued, without waiting: for a
    /// writer that gathers several messages into one write.
    pub fn try_next(&self) -> Option<Message> {
        let mailbox = &self.inner.mailbox;
        let message = mailbox.pop(&mut mailbox.inbox())?;
        self.count_delivered(&message);
        Some(message)
    }

    /// Waits up to `timeout` until at least `places` of this member's queue are
    /// free (never more than the whole queue): what a transport's reader calls
    /// before acting on a command that will answer.
    ///
    /// A client that sends commands faster than it reads the answers would
    /// otherwise fill its own queue — a `PUB` from a subscriber brings back
    /// its `MSG` and its acknowledgement — and be cut loose as too slow for
    /// its own burst. Waiting here stops the reader, so the client's commands
    /// wait in the socket and TCP slows the client down. Only the member's own
    /// commands wait: a publish never waits for anybody's queue.
    ///
    /// Returns `true` when there is room, `false` when the member has left or
    /// the time ran out (acting anyway then may well cut it as too slow).
    pub fn wait_for_room(&self, places: usize, timeout: Duration) -> bool {
        let capacity = self.inner.hub.config.queue;
        let places = places.min(capacity);
        let mailbox = &self.inner.mailbox;
        let deadline = Instant::now().checked_add(timeout);
        let mut inbox = mailbox.inbox();
        loop {
            if inbox.closed.is_some() {
                return false;
            }
            if capacity.saturating_sub(inbox.queue.len()) >= places {
                return true;
            }
            let wait = match deadline {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                None => Duration::MAX,
            };
            if wait.is_zero() {
                return false;
            }
            inbox.room_waiters += 1;
            inbox = mailbox
                .room
                .wait_timeout(inbox, wait)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            inbox.room_waiters -= 1;
        }
    }

    fn count_delivered(&self, message: &Message) {
        if message.kind != Kind::Reply {
            self.inner.hub.delivered.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Why the member left, once it has.
    pub fn left(&self) -> Option<Leave> {
        self.inner.mailbox.inbox().closed.clone()
    }

    /// Leaves the hub with `reason`. Returns `true` if this call made it leave,
    /// `false` if it had left already (the first reason is the one kept).
    pub fn leave(&self, reason: Leave) -> bool {
        let removed = self.inner.hub.state().remove(self.inner.id.0, reason);
        match removed {
            Some(r) => {
                self.inner.hub.finish(r);
                true
            }
            None => false,
        }
    }

    /// Sets what the hub calls when it cuts this member loose on its own
    /// ([`Leave::is_cut_by_hub`]: too slow, shutdown), so the transport stops
    /// reading from a peer nobody listens to any more — the line transport
    /// shuts down the socket's reading side. If that already happened, `waker`
    /// runs at once.
    ///
    /// It runs on the thread that cut the member — a publisher's — after the
    /// hub's lock is released; it must not block.
    pub fn on_close(&self, waker: impl Fn(&Leave) + Send + Sync + 'static) {
        let already = {
            let inbox = self.inner.mailbox.inbox();
            match &inbox.closed {
                None => {
                    *lock(&self.inner.mailbox.waker) = Some(Arc::new(waker));
                    return;
                }
                Some(reason) => reason.clone(),
            }
        };
        if already.is_cut_by_hub() {
            waker(&already);
        }
    }
}

impl fmt::Debug for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Member")
            .field("id", &self.inner.id)
            .field("name", &self.inner.name)
            .field("left", &self.left())
            .finish()
    }
}

impl Drop for MemberInner {
    fn drop(&mut self) {
        let removed = self.hub.state().remove(
            self.id.0,
            Leave::Error("the transport dropped its member without leaving".into()),
        );
        if let Some(r) = removed {
            self.hub.finish(r);
        }
        // A member that left by choice may still have had messages queued that
        // nobody will take now: they are discarded, and counted as such.
        let thrown = published_in(&self.mailbox.inbox().queue);
        if thrown > 0 {
            self.hub.state().stats.discarded += thrown;
        }
    }
}

/// The clock's stop signal: a flag and a condvar, so stopping wakes a clock in
/// the middle of its wait instead of after it.
#[derive(Default)]
struct Clock {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl Clock {
    fn stop(&self) {
        *lock(&self.stopped) = true;
        self.wake.notify_all();
    }

    /// Waits until `at`; returns `true` if stopped meanwhile.
    fn wait_until(&self, at: Instant) -> bool {
        let mut stopped = lock(&self.stopped);
        loop {
            if *stopped {
                return true;
            }
            let left = at.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            stopped = self
                .wake
                .wait_timeout(stopped, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// The clock thread: a tick every `every`, on a fixed schedule; ticks missed
/// while the machine was busy are skipped, not sent in a burst.
fn run_clock(hub: &Weak<Shared>, clock: &Clock, every: Duration) {
    let mut next = Instant::now() + every;
    loop {
        if clock.wait_until(next) {
            return;
        }
        let Some(shared) = hub.upgrade() else {
            return;
        };
        shared.tick();
        drop(shared);
        next += every;
        let now = Instant::now();
        if next <= now {
            next = now + every;
        }
    }
}

fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // These small mutexes guard an Option or a bool; a poison cannot leave
    // them half-written.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(queue: usize) -> Hub {
        Hub::new(HubConfig {
            queue,
            ..HubConfig::default()
        })
        .expect("hub")
    }

    fn texts(member: &Member) -> Vec<String> {
        std::iter::from_fn(|| member.try_next())
            .map(|m| m.text.to_string())
            .collect()
    }

    #[test]
    fn a_member_receives_only_what_was_published_while_it_was_subscribed() {
        let hub = hub(8);
        let a = hub.join("a").unwrap();
        a.publish("before");
        a.subscribe("on");
        a.publish("during");
        a.unsubscribe("off");
        a.publish("after");
        assert_eq!(texts(&a), ["on", "during", "off"]);
    }

    #[test]
    fn a_full_queue_cuts_the_member_and_throws_its_queue_away() {
        let hub = hub(2);
        let slow = hub.join("slow").unwrap();
        slow.subscribe("ok");
        slow.publish("1");
        slow.publish("2");
        assert_eq!(slow.left(), Some(Leave::Slow { queue: 2 }));
        assert_eq!(
            slow.next(Duration::ZERO),
            Next::Closed(Leave::Slow { queue: 2 })
        );
        let stats = hub.stats();
        assert_eq!((stats.members, stats.left.slow), (0, 1));
        // "1" sat in the queue, "2" found it full.
        assert_eq!((stats.fanned_out, stats.dropped_slow), (2, 2));
    }

    #[test]
    fn a_member_that_quits_still_gets_its_queue_then_closed() {
        let hub = hub(8);
        let a = hub.join("a").unwrap();
        a.subscribe("ok");
        a.publish("last");
        assert!(a.leave(Leave::Quit));
        assert!(!a.leave(Leave::Eof), "the first reason stays");
        assert_eq!(texts(&a), ["ok", "last"]);
        assert_eq!(a.next(Duration::ZERO), Next::Closed(Leave::Quit));
    }

    #[test]
    fn waiting_for_room_ends_when_the_writer_takes_or_the_member_leaves() {
        let hub = hub(2);
        let a = hub.join("a").unwrap();
        a.reply("1");
        a.reply("2");
        assert!(!a.wait_for_room(1, Duration::from_millis(10)), "full");
        let writer = a.clone();
        let taker = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            writer.try_next()
        });
        assert!(a.wait_for_room(1, Duration::from_secs(5)));
        assert!(taker.join().unwrap().is_some());
        assert!(!a.wait_for_room(5, Duration::ZERO), "needs the whole queue");
        let leaver = a.clone();
        let left = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            leaver.leave(Leave::Quit)
        });
        assert!(!a.wait_for_room(2, Duration::from_secs(5)), "left");
        assert!(left.join().unwrap());
    }

    #[test]
    fn the_waker_runs_only_when_the_hub_cuts() {
        let hub = hub(8);
        let woken = Arc::new(Mutex::new(Vec::new()));
        let (a, b) = (hub.join("a").unwrap(), hub.join("b").unwrap());
        for m in [&a, &b] {
            let woken = woken.clone();
            m.on_close(move |why| lock(&woken).push(why.clone()));
        }
        a.leave(Leave::Eof);
        hub.shutdown();
        assert_eq!(*lock(&woken), [Leave::Shutdown]);
        assert!(hub.join("c").is_err(), "a shut hub refuses");
    }

    #[test]
    fn the_hub_refuses_past_its_maximum_with_a_reason() {
        let hub = Hub::new(HubConfig {
            max_members: 1,
            ..HubConfig::default()
        })
        .unwrap();
        let _a = hub.join("a").unwrap();
        let e = hub.join("b").unwrap_err();
        assert_eq!(
            e.kind(),
            &ErrorKind::RefusedByServer("hub full (1 members)".into())
        );
        assert_eq!(hub.stats().refused, 1);
    }

    #[test]
    fn dropping_the_last_handle_leaves() {
        let hub = hub(8);
        let a = hub.join("a").unwrap();
        let a2 = a.clone();
        drop(a);
        assert_eq!(hub.stats().members, 1);
        drop(a2);
        assert_eq!(hub.stats().left.error, 1);
    }

    #[test]
    fn settings_out_of_range_are_refused() {
        for config in [
            HubConfig {
                queue: 0,
                ..HubConfig::default()
            },
            HubConfig {
                max_members: MAX_MEMBERS_CEILING + 1,
                ..HubConfig::default()
            },
            HubConfig {
                tick: Some(Duration::from_micros(10)),
                ..HubConfig::default()
            },
        ] {
            assert!(Hub::new(config).is_err(), "{config:?}");
        }
    }

    #[test]
    fn the_clock_ticks_on_its_own_and_stops_at_shutdown() {
        let hub = Hub::new(HubConfig {
            tick: Some(Duration::from_millis(5)),
            ..HubConfig::default()
        })
        .unwrap();
        let a = hub.join("a").unwrap();
        a.subscribe("ok");
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut ticks = 0;
        while ticks < 3 && Instant::now() < deadline {
            if let Next::Message(m) = a.next(Duration::from_millis(100)) {
                ticks += usize::from(m.kind == Kind::Tick);
            }
        }
        assert_eq!(ticks, 3);
        let at_shutdown = hub.shutdown().published;
        thread::sleep(Duration::from_millis(20));
        assert_eq!(hub.stats().published, at_shutdown, "no tick after shutdown");
    }
}
