//! The kept socket: a hub that pushes every message to every subscriber in real time.
//!
//! The seed sets two ways of talking side by side. HTTP is a request and its
//! answer: the client asks, the server answers, the connection's work is done
//! — the server can never speak first. Socket communication keeps the
//! connection open and lets **both sides talk at any time** (양방향 실시간
//! 통신): the server pushes the moment something happens, which is what chat,
//! live scores, streaming and games need. This module is the second kind:
//! clients connect once, subscribe, and receive every message any client
//! publishes, while the server also pushes on its own (a clock tick).
//!
//! - [`hub`] — the meeting point, with no sockets in it: [`Hub`], its
//!   [`Member`]s, each with a **bounded** queue, and one total order of
//!   messages. A member too slow to keep up is cut loose rather than allowed to
//!   stall the others or fill the server's memory.
//! - [`line`](mod@line) — the hub spoken in lines of text, so `nc` can take part
//!   (`SUB`, `PUB hello`, `MSG 7 3 hello`, …): pure parse and render.
//! - [`serve`] — the hub served over TCP: each connection a member, read by
//!   its own thread and written by a second one; every way a connection can
//!   end, handled and counted.
//! - [`client`] — a client of the line protocol, for tests and the CLI.
//! - [`websocket`] — the same hub for browsers: one line per WebSocket text
//!   message, behind an HTTP route (`GET /hub`), with a page that uses it.
//!
//! `docs/push.md` tells the whole story, with an `nc` session.
//!
//! ```
//! use sockstep::push::{client::Client, hub::{Hub, HubConfig}, serve};
//! use sockstep::tcp::{server, Timeouts};
//! use sockstep::trace::Trace;
//! use std::time::Duration;
//!
//! let hub = Hub::new(HubConfig { tick: Some(Duration::from_millis(10)), ..HubConfig::default() })?;
//! let listening = server::socket("127.0.0.1:0".parse().unwrap(), &Trace::off()).bind()?.listen(16);
//! let push = serve::serve(listening, hub, Timeouts::default())?;
//! let mut client = Client::connect(push.local_addr(), Duration::from_secs(5))?;
//! client.subscribe(Duration::from_secs(5))?;
//! // Nobody publishes; the server pushes on its own.
//! let tick = client.next_published(Duration::from_secs(5))?;
//! assert!(tick.is_some_and(|line| line.to_string().starts_with("TICK ")));
//! push.shutdown();
//! # Ok::<(), sockstep::Error>(())
//! ```

pub mod client;
pub mod hub;
pub mod line;
pub mod serve;
pub mod websocket;

pub use hub::{Hub, HubConfig, Member};
