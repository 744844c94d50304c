//! The line protocol: the hub spoken in lines of text, so a person with `nc`
//! can take part. Pure functions over text; the sockets are in
//! [`serve`](super::serve) and [`client`](super::client).
//!
//! Every message is one line ending in `'\n'` (a `"\r\n"` is accepted too, as
//! `nc -C` and telnet send it), at most [`MAX_LINE`] bytes. Words are separated
//! by one space; a command word may be written in any case.
//!
//! | the client sends | the server answers |
//! |---|---|
//! | *(connects)* | `HELLO <id>`: its member number |
//! | `SUB` | `OK SUB`, then every message published from then on |
//! | `UNSUB` | `OK UNSUB`, and no more published messages |
//! | `PUB <text>` | `OK PUB <seq>`; and `MSG <seq> <id> <text>` to every subscriber (the sender too, if subscribed) |
//! | `PING [<text>]` | `PONG [<text>]` |
//! | `HELP` | `OK commands: …` |
//! | `QUIT` | what was already queued for it, then `BYE quit`, then the server closes |
//! | an empty line | nothing (ignored) |
//! | anything else | `ERR <reason>` |
//!
//! And on its own, the server sends:
//!
//! | line | when |
//! |---|---|
//! | `TICK <seq> <unix-ms>` | every tick of the hub's clock, to subscribers |
//! | `SYS <seq> <text>` | an announcement by the server, to subscribers |
//! | `BYE <reason>` | just before the server closes: `hub full (N members)`, `too slow: queue of N full`, `line longer than 4096 bytes`, `timed out`, `server shutting down`, `end of stream` (after the client half-closed) |
//!
//! A `BYE` is best-effort: a client cut loose for not reading has a full
//! socket buffer, and often finds only the end of the stream.
//!
//! ```
//! use sockstep::push::line::{Command, ServerLine};
//!
//! assert_eq!(Command::parse(b"pub hello world"), Ok(Some(Command::Pub("hello world".into()))));
//! assert!(Command::parse(b"FROB").unwrap_err().starts_with("unknown command 'FROB'"));
//! assert_eq!(
//!     ServerLine::parse("MSG 7 3 hello world"),
//!     ServerLine::Msg { seq: 7, from: 3, text: "hello world".into() }
//! );
//! ```

use std::fmt;

use crate::push::hub::{Kind, Message};

/// The longest line either side may send, in bytes, without its line ending:
/// plenty for a chat message, and a bound on what a peer that never sends a
/// newline can make the server buffer.
pub const MAX_LINE: usize = 4096;

/// The longest piece of an unknown command that an `ERR` quotes back.
const QUOTED: usize = 32;

/// What `HELP` answers.
pub const HELP: &str = "OK commands: SUB, UNSUB, PUB <text>, PING [<text>], HELP, QUIT";

/// A command from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `SUB`: start receiving published messages.
    Sub,
    /// `UNSUB`: stop receiving them.
    Unsub,
    /// `PUB <text>`: publish `text` to every subscriber.
    Pub(String),
    /// `PING [<text>]`: ask for a `PONG [<text>]`, to check the connection is alive.
    Ping(String),
    /// `HELP`: list the commands.
    Help,
    /// `QUIT`: leave; the server says `BYE quit` and closes.
    Quit,
}

impl Command {
    /// Reads one line (without its line ending) as a command.
    ///
    /// `Ok(None)` for an empty line, which is ignored, so pressing Enter in
    /// `nc` does no harm.
    ///
    /// # Errors
    /// The reason, as the server puts it after `ERR`, when the line is not a
    /// command: not UTF-8, an unknown word, `PUB` without a text, or a word
    /// that takes no text given one.
    pub fn parse(line: &[u8]) -> Result<Option<Command>, String> {
        let Ok(line) = std::str::from_utf8(line) else {
            return Err("a line must be UTF-8 text".into());
        };
        if line.is_empty() {
            return Ok(None);
        }
        let (word, rest) = match line.split_once(' ') {
            Some((word, rest)) => (word, Some(rest)),
            None => (line, None),
        };
        let alone = |command: Command| match rest {
            None => Ok(Some(command)),
            Some(_) => Err(format!("{} takes nothing after it", word.to_uppercase())),
        };
        match word.to_ascii_uppercase().as_str() {
            "SUB" => alone(Command::Sub),
            "UNSUB" => alone(Command::Unsub),
            "HELP" => alone(Command::Help),
            "QUIT" => alone(Command::Quit),
            "PING" => Ok(Some(Command::Ping(rest.unwrap_or_default().to_string()))),
            "PUB" => match rest {
                Some(text) if !text.is_empty() => Ok(Some(Command::Pub(text.to_string()))),
                _ => Err("PUB needs a text: PUB <text>".into()),
            },
            _ => {
                let quoted: String = word.chars().take(QUOTED).collect();
                Err(format!("unknown command '{quoted}'; try HELP"))
            }
        }
    }
}

impl fmt::Display for Command {
    /// The line a client sends for this command, without its line ending.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Sub => f.write_str("SUB"),
            Command::Unsub => f.write_str("UNSUB"),
            Command::Pub(text) => write!(f, "PUB {text}"),
            Command::Ping(text) if text.is_empty() => f.write_str("PING"),
            Command::Ping(text) => write!(f, "PING {text}"),
            Command::Help => f.write_str("HELP"),
            Command::Quit => f.write_str("QUIT"),
        }
    }
}

/// Appends the line that carries `message` to `out`, line ending included:
/// `MSG <seq> <from> <text>`, `TICK <seq> <unix-ms>`, `SYS <seq> <text>`, or a
/// reply's text as it is.
///
/// A text that arrived through another transport may hold a line break; each
/// `'\r'` or `'\n'` is written as a space, so one message stays one line.
///
/// ```
/// use sockstep::push::hub::{Kind, Message, MemberId};
/// use sockstep::push::line::render;
///
/// let msg = Message { seq: 7, kind: Kind::Msg, from: Some(MemberId(3)), text: "two\nlines".into() };
/// let mut out = Vec::new();
/// render(&msg, &mut out);
/// assert_eq!(out, b"MSG 7 3 two lines\n");
/// ```
pub fn render(message: &Message, out: &mut Vec<u8>) {
    let head = match message.kind {
        Kind::Msg => {
            // A Msg always has a sender; 0, never a member's number, if not.
            let from = message.from.map_or(0, |id| id.0);
            format!("MSG {} {from} ", message.seq)
        }
        Kind::Tick => format!("TICK {} ", message.seq),
        Kind::System => format!("SYS {} ", message.seq),
        Kind::Reply => String::new(),
    };
    out.extend_from_slice(head.as_bytes());
    push_text(&message.text, out);
    out.push(b'\n');
}

/// Appends `text` with every line break turned into a space.
pub(crate) fn push_text(text: &str, out: &mut Vec<u8>) {
    out.extend(
        text.bytes()
            .map(|b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
    );
}

/// One line from the server, understood: what a client reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerLine {
    /// `HELLO <id>`: the first line, with this client's member number.
    Hello(u64),
    /// `MSG <seq> <from> <text>`: a message a member published.
    Msg {
        /// Its place in the hub's one order.
        seq: u64,
        /// The member number of its publisher.
        from: u64,
        /// What it says.
        text: String,
    },
    /// `TICK <seq> <unix-ms>`: the hub's clock.
    Tick {
        /// Its place in the hub's one order.
        seq: u64,
        /// The server's time, in milliseconds since 1970.
        unix_ms: u64,
    },
    /// `SYS <seq> <text>`: an announcement from the server.
    Sys {
        /// Its place in the hub's one order.
        seq: u64,
        /// What it says.
        text: String,
    },
    /// `OK <what>`: a command was done (`OK SUB`, `OK PUB 7`).
    Ok(String),
    /// `PONG [<text>]`: the answer to `PING`.
    Pong(String),
    /// `ERR <reason>`: a command was not understood.
    Err(String),
    /// `BYE <reason>`: the server is about to close.
    Bye(String),
    /// Any other line, as it came.
    Other(String),
}

impl ServerLine {
    /// Reads one line (without its line ending). Never fails: a line that is
    /// not one of the known forms is [`ServerLine::Other`].
    pub fn parse(line: &str) -> ServerLine {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        let numbered = || {
            let (seq, text) = rest.split_once(' ').unwrap_or((rest, ""));
            seq.parse::<u64>().ok().map(|seq| (seq, text))
        };
        let parsed = match word {
            "HELLO" => rest.parse().ok().map(ServerLine::Hello),
            "MSG" => numbered().and_then(|(seq, rest)| {
                let (from, text) = rest.split_once(' ').unwrap_or((rest, ""));
                Some(ServerLine::Msg {
                    seq,
                    from: from.parse().ok()?,
                    text: text.to_string(),
                })
            }),
            "TICK" => numbered().and_then(|(seq, ms)| {
                Some(ServerLine::Tick {
                    seq,
                    unix_ms: ms.parse().ok()?,
                })
            }),
            "SYS" => numbered().map(|(seq, text)| ServerLine::Sys {
                seq,
                text: text.to_string(),
            }),
            "OK" => Some(ServerLine::Ok(rest.to_string())),
            "PONG" => Some(ServerLine::Pong(rest.to_string())),
            "ERR" => Some(ServerLine::Err(rest.to_string())),
            "BYE" => Some(ServerLine::Bye(rest.to_string())),
            _ => None,
        };
        parsed.unwrap_or_else(|| ServerLine::Other(line.to_string()))
    }

    /// Whether it is a published message (`MSG`, `TICK`, `SYS`), as opposed to
    /// an answer or a farewell; and if so, its sequence number.
    pub fn seq(&self) -> Option<u64> {
        match self {
            ServerLine::Msg { seq, .. }
            | ServerLine::Tick { seq, .. }
            | ServerLine::Sys { seq, .. } => Some(*seq),
            _ => None,
        }
    }
}

impl fmt::Display for ServerLine {
    /// The line as the server sends it, without its line ending.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let with = |f: &mut fmt::Formatter<'_>, word: &str, text: &str| {
            if text.is_empty() {
                f.write_str(word)
            } else {
                write!(f, "{word} {text}")
            }
        };
        match self {
            ServerLine::Hello(id) => write!(f, "HELLO {id}"),
            ServerLine::Msg { seq, from, text } => write!(f, "MSG {seq} {from} {text}"),
            ServerLine::Tick { seq, unix_ms } => write!(f, "TICK {seq} {unix_ms}"),
            ServerLine::Sys { seq, text } => write!(f, "SYS {seq} {text}"),
            ServerLine::Ok(text) => with(f, "OK", text),
            ServerLine::Pong(text) => with(f, "PONG", text),
            ServerLine::Err(text) => with(f, "ERR", text),
            ServerLine::Bye(text) => with(f, "BYE", text),
            ServerLine::Other(line) => f.write_str(line),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::hub::MemberId;

    #[test]
    fn commands_are_case_blind_and_keep_their_text_exactly() {
        assert_eq!(Command::parse(b"sub"), Ok(Some(Command::Sub)));
        assert_eq!(Command::parse(b"Quit"), Ok(Some(Command::Quit)));
        assert_eq!(
            Command::parse(b"PUB  two  spaces "),
            Ok(Some(Command::Pub(" two  spaces ".into())))
        );
        assert_eq!(
            Command::parse(b"PING"),
            Ok(Some(Command::Ping(String::new())))
        );
        assert_eq!(
            Command::parse(b"ping 42"),
            Ok(Some(Command::Ping("42".into())))
        );
        assert_eq!(Command::parse(b""), Ok(None));
    }

    #[test]
    fn a_line_that_is_no_command_gets_a_reason() {
        assert_eq!(
            Command::parse(b"PUB").unwrap_err(),
            "PUB needs a text: PUB <text>"
        );
        assert_eq!(
            Command::parse(b"PUB ").unwrap_err(),
            "PUB needs a text: PUB <text>"
        );
        assert_eq!(
            Command::parse(b"sub now").unwrap_err(),
            "SUB takes nothing after it"
        );
        assert_eq!(
            Command::parse(b"\xff").unwrap_err(),
            "a line must be UTF-8 text"
        );
        let long = "X".repeat(100);
        let e = Command::parse(long.as_bytes()).unwrap_err();
        assert_eq!(e, format!("unknown command '{}'; try HELP", "X".repeat(32)));
    }

    #[test]
    fn every_command_prints_as_the_line_that_parses_back_to_it() {
        for c in [
            Command::Sub,
            Command::Unsub,
            Command::Pub("hi there".into()),
            Command::Ping(String::new()),
            Command::Ping("x".into()),
            Command::Help,
            Command::Quit,
        ] {
            assert_eq!(Command::parse(c.to_string().as_bytes()), Ok(Some(c)));
        }
    }

    #[test]
    fn rendered_messages_parse_back() {
        let cases = [
            (
                Kind::Msg,
                Some(MemberId(3)),
                "hello world",
                "MSG 9 3 hello world",
            ),
            (Kind::Tick, None, "1700000000000", "TICK 9 1700000000000"),
            (
                Kind::System,
                None,
                "restarting soon",
                "SYS 9 restarting soon",
            ),
            (Kind::Reply, None, "OK PUB 9", "OK PUB 9"),
        ];
        for (kind, from, text, line) in cases {
            let message = Message {
                seq: 9,
                kind,
                from,
                text: text.into(),
            };
            let mut out = Vec::new();
            render(&message, &mut out);
            assert_eq!(out, format!("{line}\n").as_bytes());
            assert_eq!(ServerLine::parse(line).to_string(), line);
        }
        assert_eq!(ServerLine::parse("MSG 9 3 hello world").seq(), Some(9));
        assert_eq!(ServerLine::parse("OK PUB 9").seq(), None);
        assert_eq!(
            ServerLine::parse("MSG x"),
            ServerLine::Other("MSG x".into())
        );
        assert_eq!(
            ServerLine::parse("BYE quit"),
            ServerLine::Bye("quit".into())
        );
    }
}
