//! `sockstep http serve` and `sockstep http get|post`: the HTTP server and client
//! for a terminal, and for real peers (curl, a browser, Python) to talk to.

use std::io::{self, Write};
use std::time::Duration;

use crate::cli::Command;
use crate::cli::args::{self, Parsed, Spec, Usage};
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::http::client::{Client, ClientConfig};
use crate::http::server::{HttpConfig, HttpStats, Router, echo};
use crate::http::wire::{Headers, Request, Response};
use crate::tcp::serve::{KEEP_WARM_SHORT, ServeConfig};
use crate::tcp::server;

/// `sockstep http --help`.
pub const USAGE: &str = "\
Usage:
  sockstep http serve ADDR [--dir DIR] [--close] [--for SECS] [--trace]
  sockstep http get URL [--include] [--follow N] [--trace]
  sockstep http post URL --data TEXT [--type MEDIA] [--include] [--trace]

'sockstep http serve --help' and 'sockstep http get --help' say more.
";

/// `sockstep http serve --help`.
pub const SERVE_USAGE: &str = "\
Usage: sockstep http serve ADDR [--dir DIR] [--close] [--for SECS] [--trace]

Runs the HTTP/1.1 server on ADDR (127.0.0.1:8080; port 0: the OS chooses) and
prints 'serving http://IP:PORT/'. Press Enter (or wait --for SECS) to stop; it
then prints its counts. Routes:
  GET  /             a page listing these routes
  GET  /status       the server's counts as JSON
  ANY  /echo         the request you sent, as the server understood it
  GET  /files/...    the files under DIR (with --dir); no path may leave DIR

Options:
  --dir DIR      serve the files under DIR at /files/
  --close        one request per connection, closed after the response: the
                 seed's description of HTTP (HTTP/1.0's shape); without it
                 HTTP/1.1 keep-alive is on
  --for SECS     stop by itself after SECS
  --trace        print every socket step and HTTP message on stdout
  -h, --help     show this help
";

/// `sockstep http get --help` (and `post`).
pub const CLIENT_USAGE: &str = "\
Usage: sockstep http get URL [--include] [--follow N] [--trace]
       sockstep http post URL --data TEXT [--type MEDIA] [--include] [--trace]

Sends one request to URL (http://HOST[:PORT]/PATH; no https: std has no TLS)
and prints the response body on stdout. The steps: resolve the host, connect,
write the request, read the response, close. Exits 0 whatever the status;
1 if a step failed.

Options:
  --include      print the status line and headers before the body
  --follow N     follow up to N redirects (default 0: a 3xx is printed as it is)
  --data TEXT    the body to POST
  --type MEDIA   its Content-Type (default text/plain; charset=utf-8)
  --trace        print every socket step and HTTP message on stderr
  -h, --help     show this help
";

const SERVE: Spec = Spec {
    command: "sockstep http serve",
    positionals: &["ADDR"],
    switches: &["--close", "--trace"],
    options: &[("--dir", "DIR"), ("--for", "SECS")],
};

const GET: Spec = Spec {
    command: "sockstep http get",
    positionals: &["URL"],
    switches: &["--include", "--trace"],
    options: &[("--follow", "N")],
};

const POST: Spec = Spec {
    command: "sockstep http post",
    positionals: &["URL"],
    switches: &["--include", "--trace"],
    options: &[("--data", "TEXT"), ("--type", "MEDIA")],
};

/// `sockstep http serve`, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpServe {
    /// Where to listen.
    pub endpoint: Endpoint,
    /// Serve this directory's files at `/files/` (`--dir`).
    pub dir: Option<String>,
    /// One request per connection (`--close`).
    pub close: bool,
    /// Stop by itself after this long (`--for`).
    pub run_for: Option<Duration>,
    /// Print every step (`--trace`).
    pub trace: bool,
}

/// `sockstep http get|post`, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpFetch {
    /// `GET` or `POST`.
    pub method: String,
    /// The URL, checked when the command runs (resolution is a step of its own).
    pub url: String,
    /// The body and its type, for `POST`.
    pub body: Option<(String, String)>,
    /// Print the head too (`--include`).
    pub include: bool,
    /// Redirects to follow (`--follow`).
    pub follow: usize,
    /// Print every step on stderr (`--trace`).
    pub trace: bool,
}

/// The most redirects `--follow` may ask for; browsers stop around 20.
const MAX_FOLLOW: usize = 20;

/// Parses the words after `http`.
///
/// # Errors
/// A [`Usage`] error for a missing or unknown verb or a bad flag or value.
pub fn parse(words: &[String]) -> Result<Command, Usage> {
    args::verb(
        "sockstep http",
        USAGE,
        words,
        &[
            ("serve", parse_serve),
            ("get", parse_get),
            ("post", parse_post),
        ],
    )
}

fn parse_serve(words: &[String]) -> Result<Command, Usage> {
    let parsed = args::parse(&SERVE, words)?;
    if parsed.help {
        return Ok(Command::Help(SERVE_USAGE.to_string()));
    }
    Ok(Command::HttpServe(HttpServe {
        endpoint: super::tcp::tcp_endpoint(&parsed)?,
        dir: parsed.value("--dir").map(str::to_string),
        close: parsed.switch("--close"),
        run_for: parsed.seconds("--for")?,
        trace: parsed.switch("--trace"),
    }))
}

fn parse_get(words: &[String]) -> Result<Command, Usage> {
    parse_fetch(&GET, "GET", words)
}

fn parse_post(words: &[String]) -> Result<Command, Usage> {
    parse_fetch(&POST, "POST", words)
}

fn parse_fetch(spec: &Spec, method: &str, words: &[String]) -> Result<Command, Usage> {
    let parsed: Parsed = args::parse(spec, words)?;
    if parsed.help {
        return Ok(Command::Help(CLIENT_USAGE.to_string()));
    }
    let body = if method == "POST" {
        let data = parsed
            .value("--data")
            .ok_or_else(|| parsed.error("POST needs --data TEXT"))?;
        let kind = parsed
            .value("--type")
            .unwrap_or("text/plain; charset=utf-8");
        Some((data.to_string(), kind.to_string()))
    } else {
        None
    };
    let follow = if method == "GET" {
        parsed.count("--follow", 0..=MAX_FOLLOW, 0)?
    } else {
        0
    };
    Ok(Command::HttpFetch(HttpFetch {
        method: method.to_string(),
        url: parsed.positional(0).to_string(),
        body,
        include: parsed.switch("--include"),
        follow,
        trace: parsed.switch("--trace"),
    }))
}

/// The router `http serve` runs: the index page, status, echo and the files.
///
/// # Errors
/// When `--dir` is not a directory.
pub fn router(cmd: &HttpServe) -> Result<Router, Error> {
    let config = HttpConfig {
        keep_alive: !cmd.close,
        ..HttpConfig::default()
    };
    let mut router = Router::new()
        .with_config(config)
        .route("GET", "/", |_: &Request| {
            Response::new(200).with_body("text/html; charset=utf-8", INDEX.as_bytes().to_vec())
        })
        .status_page("/status");
    for method in ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        router = router.route(method, "/echo", echo);
    }
    if let Some(dir) = &cmd.dir {
        router = router.files("/files/", dir)?;
    }
    Ok(router)
}

const INDEX: &str = "<!doctype html>
<html><head><meta charset=\"utf-8\"><title>sockstep http serve</title></head>
<body><h1>sockstep http serve</h1>
<ul>
<li><a href=\"/status\">/status</a> — the server's counts as JSON</li>
<li><a href=\"/echo\">/echo</a> — your request, as the server understood it</li>
<li><a href=\"/files/\">/files/</a> — the files under --dir, if given</li>
</ul></body></html>
";

/// Runs `sockstep http serve` until Enter is pressed or `--for` runs out.
///
/// # Errors
/// The step that failed — resolve, bind, or starting the server — or a bad `--dir`.
pub fn serve(cmd: &HttpServe) -> Result<(), Error> {
    let router = router(cmd)?;
    let addr = super::resolve_first(&cmd.endpoint)?;
    let trace = super::traced(cmd.trace);
    let listening = server::socket(addr, &trace)
        .bind()?
        .listen(super::tcp::DEFAULT_BACKLOG);
    // An HTTP server's connections are often short (one request each
    // without keep-alive): warm threads save starting one per connection.
    let config = ServeConfig {
        keep_warm: KEEP_WARM_SHORT,
        ..ServeConfig::default()
    };
    let server = listening.serve(config, router.clone())?;
    super::tcp::print_line(&format!(
        "serving http://{}/ ({}; press Enter to stop)",
        server.local_addr(),
        if cmd.close {
            "one request per connection"
        } else {
            "keep-alive"
        }
    ));
    super::tcp::wait_for_stop(cmd.run_for);
    let tcp = server.shutdown();
    eprintln!(
        "sockstep: stopped: {}; {}",
        http_line(&router.stats()),
        super::tcp::stats_line(&tcp)
    );
    Ok(())
}

fn http_line(s: &HttpStats) -> String {
    format!(
        "{} requests on {} connections ({} reused one), {} refused; responses 2xx {}, 3xx {}, 4xx {}, 5xx {}",
        s.requests,
        s.connections,
        s.reused,
        s.refused,
        s.by_class[1],
        s.by_class[2],
        s.by_class[3],
        s.by_class[4]
    )
}

/// Runs `sockstep http get|post`: one request, its response on stdout.
///
/// # Errors
/// The step that failed: the URL, resolving, connecting, writing, reading.
pub fn fetch(cmd: &HttpFetch) -> Result<(), Error> {
    let trace = super::traced_on_stderr(cmd.trace);
    let config = ClientConfig {
        follow_redirects: cmd.follow,
        ..ClientConfig::default()
    };
    let mut client = Client::with_config(config)
        .with_trace(&trace)
        .without_keep_alive();
    let mut headers = Headers::new();
    let body = match &cmd.body {
        Some((data, kind)) => {
            headers.append("Content-Type", kind.as_str());
            data.as_bytes().to_vec()
        }
        None => Vec::new(),
    };
    let response = client.request(&cmd.method, &cmd.url, &headers, body)?;
    let mut out = io::stdout().lock();
    if cmd.include {
        let mut head = format!(
            "{} {} {}\r\n",
            response.version, response.status, response.reason
        );
        for (name, value) in response.headers.iter() {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let _ = out.write_all(head.as_bytes());
    }
    // A closed stdout (`| head`) is not the request's failure.
    let _ = out.write_all(&response.body).and_then(|()| out.flush());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn every_flag_the_parser_accepts_is_in_the_help() {
        for (spec, usage) in [
            (SERVE, SERVE_USAGE),
            (GET, CLIENT_USAGE),
            (POST, CLIENT_USAGE),
        ] {
            for flag in spec
                .switches
                .iter()
                .chain(spec.options.iter().map(|(f, _)| f))
            {
                assert!(usage.contains(flag), "{} help lacks {flag}", spec.command);
            }
        }
    }

    #[test]
    fn serve_reads_its_flags() {
        let Ok(Command::HttpServe(s)) =
            parse(&words("serve 127.0.0.1:0 --close --dir /tmp --for 1"))
        else {
            panic!("serve should parse");
        };
        assert!(s.close);
        assert_eq!(s.dir.as_deref(), Some("/tmp"));
        assert_eq!(s.run_for, Some(Duration::from_secs(1)));
        assert!(parse(&words("serve udp://127.0.0.1:0")).is_err());
    }

    #[test]
    fn post_needs_data_and_get_takes_follow() {
        assert_eq!(
            parse(&words("post http://a/")).unwrap_err().message,
            "POST needs --data TEXT"
        );
        let Ok(Command::HttpFetch(f)) = parse(&words("get http://a/ --follow 3 --include")) else {
            panic!("get should parse");
        };
        assert_eq!((f.follow, f.include, f.method.as_str()), (3, true, "GET"));
        assert!(parse(&words("get http://a/ --follow 99")).is_err());
    }
}
