//! The command-line parser: positionals, switches (`--trace`) and options with a
//! value (`--backlog 8` or `--backlog=8`), checked against what a verb accepts.
//!
//! It does only what sockstep's verbs need, so it stays readable: no short
//! flags except `-h`, no bundling, no `--` terminator, no repeated flags. A verb
//! describes itself with a [`Spec`]; [`parse`] either returns every argument
//! sorted into place or a [`Usage`] error naming the first thing that is wrong.
//! Turning a value into a number is a second, separate step
//! ([`Parsed::count`], [`Parsed::seconds`]), so every range check says which
//! flag it was and what range it wanted.

use std::fmt;
use std::ops::RangeInclusive;
use std::time::Duration;

use crate::cli::Command;

/// What one verb accepts.
#[derive(Debug)]
pub struct Spec {
    /// The command as typed, for messages: `"sockstep tcp listen"`.
    pub command: &'static str,
    /// The names of the required positionals, in order: `&["ADDR"]`.
    pub positionals: &'static [&'static str],
    /// Flags that stand alone: `"--trace"`.
    pub switches: &'static [&'static str],
    /// Flags that take a value, with the value's name for messages: `("--backlog", "N")`.
    pub options: &'static [(&'static str, &'static str)],
}

/// A command line the parser did not accept: which command, and what was wrong.
///
/// Its `Display` is the two lines sockstep prints on standard error: the
/// problem, then where to read the usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    /// The command whose usage applies, e.g. `"sockstep tcp listen"`.
    pub command: &'static str,
    /// What was wrong, as one line.
    pub message: String,
}

impl Usage {
    /// A usage error for `command`.
    pub fn new(command: &'static str, message: impl Into<String>) -> Usage {
        Usage {
            command,
            message: message.into(),
        }
    }
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}\ntry '{} --help'",
            self.command, self.message, self.command
        )
    }
}

impl std::error::Error for Usage {}

/// The arguments of one verb, sorted: positionals in order, flags by name.
#[derive(Debug)]
pub struct Parsed {
    command: &'static str,
    /// `--help` or `-h` appeared; nothing else was checked.
    pub help: bool,
    positionals: Vec<String>,
    flags: Vec<(&'static str, Option<String>)>,
}

/// The longest number of seconds any flag accepts: one year. Deadlines are
/// `Instant::now() + SECS`, and std panics if that overflows; a year is far
/// beyond any wait a person means.
pub const MAX_SECONDS: u64 = 365 * 24 * 60 * 60;

/// Sorts `args` (the words after the verb) according to `spec`.
///
/// # Errors
/// A [`Usage`] error for an unknown flag, a flag given twice, an option without
/// its value, a switch given a value, a positional too many or one missing.
pub fn parse(spec: &Spec, args: &[String]) -> Result<Parsed, Usage> {
    let mut parsed = Parsed {
        command: spec.command,
        help: false,
        positionals: Vec::new(),
        flags: Vec::new(),
    };
    // Help wins over everything else on the line, so `--help` always works,
    // even after a typo.
    if args.iter().any(|a| is_help(a)) {
        parsed.help = true;
        return Ok(parsed);
    }
    let mut words = args.iter();
    while let Some(word) = words.next() {
        if !word.starts_with('-') || word == "-" {
            if parsed.positionals.len() == spec.positionals.len() {
                return Err(parsed.extra_positional(spec, word));
            }
            parsed.positionals.push(word.clone());
            continue;
        }
        let (name, inline) = match word.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (word.as_str(), None),
        };
        let (flag, value) = if let Some(&switch) = spec.switches.iter().find(|s| **s == name) {
            if inline.is_some() {
                return Err(parsed.error(format!("{switch} takes no value")));
            }
            (switch, None)
        } else if let Some(&(option, metavar)) = spec.options.iter().find(|(o, _)| *o == name) {
            let value = match inline {
                Some(v) => Some(v),
                // A flag where the value should be means the value was forgotten.
                None => words
                    .next()
                    .map(String::as_str)
                    .filter(|v| !v.starts_with("--")),
            };
            match value {
                Some(v) if !v.is_empty() => (option, Some(v.to_string())),
                _ => {
                    return Err(
                        parsed.error(format!("{option} needs a value ({option} {metavar})"))
                    );
                }
            }
        } else {
            return Err(parsed.error(format!("unknown option '{name}'")));
        };
        if parsed.flags.iter().any(|(f, _)| *f == flag) {
            return Err(parsed.error(format!("{flag} is given twice")));
        }
        parsed.flags.push((flag, value));
    }
    if let Some(missing) = spec.positionals.get(parsed.positionals.len()) {
        return Err(parsed.error(format!("missing {missing}")));
    }
    Ok(parsed)
}

/// Whether `word` asks for help.
pub fn is_help(word: &str) -> bool {
    word == "--help" || word == "-h"
}

/// A verb of a command group (`listen` of `sockstep tcp`) and its parser.
pub type Verb = (&'static str, fn(&[String]) -> Result<Command, Usage>);

/// The words after a group's name (`sockstep tcp …`), handed to the parser of
/// the verb they start with; `--help` gives the group's `usage`.
///
/// # Errors
/// A [`Usage`] error naming the group when the verb is missing or unknown,
/// listing the verbs there are; otherwise the verb parser's own.
pub fn verb(
    group: &'static str,
    usage: &str,
    words: &[String],
    verbs: &[Verb],
) -> Result<Command, Usage> {
    let names = || {
        verbs
            .iter()
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match words {
        [] => Err(Usage::new(
            group,
            format!("missing the verb (there are: {})", names()),
        )),
        [first, ..] if is_help(first) => Ok(Command::Help(usage.to_string())),
        [first, rest @ ..] => match verbs.iter().find(|(name, _)| name == first) {
            Some((_, parse)) => parse(rest),
            None => Err(Usage::new(
                group,
                format!("unknown verb '{first}' (there are: {})", names()),
            )),
        },
    }
}

/// Whether `text` is a plain decimal: digits with at most one point, and at
/// least one digit. f64's own parser would also take "inf", "NaN", "1e3" and "-1".
pub(super) fn is_plain_decimal(text: &str) -> bool {
    text.chars().all(|c| c.is_ascii_digit() || c == '.')
        && text.chars().filter(|&c| c == '.').count() <= 1
        && text.chars().any(|c| c.is_ascii_digit())
}

/// The units a duration may be written in, longest suffix first so `ms` is not
/// read as `s`, with their length in nanoseconds.
const DURATION_UNITS: [(&str, u128); 4] = [
    ("us", 1_000),
    ("µs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
];

/// Reads a duration written with its unit: `250us` (or `250µs`), `5ms`, `1.5s`.
/// A bare number is refused: "5" could mean seconds or milliseconds, and a
/// delay off by a factor of 1,000 is not a typo anyone should have to debug.
/// Exact to the nanosecond (no floating point); digits past it are dropped.
///
/// ```text
/// "250us" → 250 µs    "1.5ms" → 1,500 µs    "2s" → 2 s    "5" → None    "5parsecs" → None
/// ```
pub fn parse_duration(text: &str) -> Option<Duration> {
    let (number, unit_nanos) = DURATION_UNITS
        .iter()
        .find_map(|(unit, nanos)| text.strip_suffix(unit).map(|n| (n, *nanos)))?;
    if !is_plain_decimal(number) {
        return None;
    }
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    // 30 digits of u128 arithmetic cannot overflow (10^30 × 10^9 < 2^128) and
    // reach far past any duration a u64 of seconds can hold.
    if whole.len() + fraction.len() > 30 {
        return None;
    }
    let digits: u128 = format!("{whole}{fraction}").parse().ok()?;
    let nanos = digits * unit_nanos / 10u128.pow(fraction.len() as u32);
    let secs = u64::try_from(nanos / 1_000_000_000).ok()?;
    // The remainder of a division by 10^9 is below 10^9, so it fits a u32.
    Some(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

/// Reads a probability: a fraction from 0 to 1 (`0.1`) or a percentage from 0%
/// to 100% (`10%`, `12.5%`).
pub fn parse_probability(text: &str) -> Option<f64> {
    let (number, scale) = match text.strip_suffix('%') {
        Some(number) => (number, 100.0),
        None => (text, 1.0),
    };
    if !is_plain_decimal(number) {
        return None;
    }
    let p = number.parse::<f64>().ok()? / scale;
    (0.0..=1.0).contains(&p).then_some(p)
}

impl Parsed {
    /// The `index`th positional. [`parse`] made sure every one the spec names is there.
    pub fn positional(&self, index: usize) -> &str {
        &self.positionals[index]
    }

    /// Whether the switch `name` was given.
    pub fn switch(&self, name: &str) -> bool {
        self.flags.iter().any(|(f, _)| *f == name)
    }

    /// The value of option `name`, if it was given.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .find(|(f, _)| *f == name)
            .and_then(|(_, v)| v.as_deref())
    }

    /// Option `name` as a whole number in `range`, or `default` when not given.
    ///
    /// # Errors
    /// A [`Usage`] error naming the flag and the range when the value is not a
    /// whole number or is outside `range`.
    pub fn count(
        &self,
        name: &str,
        range: RangeInclusive<usize>,
        default: usize,
    ) -> Result<usize, Usage> {
        let Some(text) = self.value(name) else {
            return Ok(default);
        };
        match text.parse::<usize>() {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(self.error(format!(
                "{name} must be a whole number from {} to {}, not '{text}'",
                range.start(),
                range.end()
            ))),
        }
    }

    /// Option `name` as a number of seconds (`30`, `0.5`) above zero and at most
    /// [`MAX_SECONDS`], or `None` when not given.
    ///
    /// # Errors
    /// A [`Usage`] error naming the flag and the range when the value is not a
    /// plain decimal number, is zero, or is too large.
    pub fn seconds(&self, name: &str) -> Result<Option<Duration>, Usage> {
        let Some(text) = self.value(name) else {
            return Ok(None);
        };
        let seconds = text.parse::<f64>().ok().filter(|_| is_plain_decimal(text));
        match seconds {
            Some(s) if s > 0.0 && s <= MAX_SECONDS as f64 => Ok(Some(Duration::from_secs_f64(s))),
            _ => Err(self.error(format!(
                "{name} must be a number of seconds above 0 and at most {MAX_SECONDS} (e.g. 30 or 0.5), not '{text}'"
            ))),
        }
    }

    /// Option `name` as a duration with its unit (`250us`, `5ms`, `1.5s`), from
    /// zero up to `max`, or `None` when not given.
    ///
    /// # Errors
    /// A [`Usage`] error naming the flag, the units and the maximum when the
    /// value has no unit or an unknown one, is not a plain decimal, or is too long.
    pub fn duration(&self, name: &str, max: Duration) -> Result<Option<Duration>, Usage> {
        let Some(text) = self.value(name) else {
            return Ok(None);
        };
        match parse_duration(text) {
            Some(d) if d <= max => Ok(Some(d)),
            _ => Err(self.error(format!(
                "{name} must be a duration from 0 to {max:?} with its unit (us, ms or s), as 250us, 5ms or 2s, not '{text}'"
            ))),
        }
    }

    /// Option `name` as a probability from 0 to 1, written as a fraction (`0.1`)
    /// or a percentage (`10%`), or `None` when not given.
    ///
    /// # Errors
    /// A [`Usage`] error naming the flag when the value is not a plain decimal
    /// or is outside 0..1 (0%..100%).
    pub fn probability(&self, name: &str) -> Result<Option<f64>, Usage> {
        let Some(text) = self.value(name) else {
            return Ok(None);
        };
        match parse_probability(text) {
            Some(p) => Ok(Some(p)),
            None => Err(self.error(format!(
                "{name} must be a probability from 0 to 1, as 0.1 or 10%, not '{text}'"
            ))),
        }
    }

    /// A usage error for this command, for checks the verb makes itself.
    pub fn error(&self, message: impl Into<String>) -> Usage {
        Usage::new(self.command, message)
    }

    /// `text` (the value of `what`) as an endpoint of `protocol`, which is
    /// also the scheme assumed when it names none; another scheme is a
    /// mistake for this verb, and the error says how to write it.
    pub fn endpoint(
        &self,
        what: &str,
        text: &str,
        protocol: crate::Protocol,
    ) -> Result<crate::Endpoint, Usage> {
        let endpoint = crate::Endpoint::parse_with_default(text, protocol)
            .map_err(|e| self.error(format!("bad {what}: {}", e.summary())))?;
        if endpoint.protocol() != protocol {
            return Err(self.error(format!(
                "{endpoint} is a {} endpoint; this verb speaks {} (write {protocol}://… or leave the scheme out)",
                endpoint.protocol(),
                protocol.scheme().to_uppercase(),
            )));
        }
        Ok(endpoint)
    }

    fn extra_positional(&self, spec: &Spec, word: &str) -> Usage {
        match spec.positionals {
            [] => self.error(format!("unexpected argument '{word}'")),
            [.., last] => self.error(format!(
                "unexpected argument '{word}' ({last} is already '{}')",
                self.positionals.last().map_or("", String::as_str)
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: Spec = Spec {
        command: "sockstep test",
        positionals: &["ADDR"],
        switches: &["--trace", "--echo"],
        options: &[("--backlog", "N"), ("--for", "SECS")],
    };

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    fn ok(line: &str) -> Parsed {
        parse(&SPEC, &words(line)).unwrap_or_else(|e| panic!("{line:?} should parse: {e}"))
    }

    fn message(line: &str) -> String {
        parse(&SPEC, &words(line)).expect_err(line).message
    }

    #[test]
    fn positionals_switches_and_options_are_sorted_into_place() {
        let p = ok("--trace 127.0.0.1:1 --backlog 8");
        assert_eq!(p.positional(0), "127.0.0.1:1");
        assert!(p.switch("--trace"));
        assert!(!p.switch("--echo"));
        assert_eq!(p.value("--backlog"), Some("8"));
        assert_eq!(p.value("--for"), None);
    }

    #[test]
    fn an_option_value_may_follow_an_equals_sign() {
        assert_eq!(ok("a --backlog=8").value("--backlog"), Some("8"));
    }

    #[test]
    fn help_anywhere_wins_even_over_mistakes() {
        assert!(ok("--bogus -h").help);
        assert!(ok("a b c --help").help);
        assert!(!ok("a").help);
    }

    #[test]
    fn an_unknown_flag_is_named() {
        assert_eq!(message("a --bogus"), "unknown option '--bogus'");
        assert_eq!(message("a -x"), "unknown option '-x'");
        assert_eq!(message("a --bogus=1"), "unknown option '--bogus'");
    }

    #[test]
    fn an_option_without_its_value_says_what_value() {
        assert_eq!(
            message("a --backlog"),
            "--backlog needs a value (--backlog N)"
        );
        assert_eq!(
            message("a --backlog --trace"),
            "--backlog needs a value (--backlog N)"
        );
        assert_eq!(
            message("a --backlog="),
            "--backlog needs a value (--backlog N)"
        );
    }

    #[test]
    fn a_switch_takes_no_value() {
        assert_eq!(message("a --trace=yes"), "--trace takes no value");
    }

    #[test]
    fn a_flag_given_twice_is_refused() {
        assert_eq!(message("a --trace --trace"), "--trace is given twice");
        assert_eq!(
            message("a --backlog 1 --backlog=2"),
            "--backlog is given twice"
        );
    }

    #[test]
    fn a_second_positional_is_refused_and_the_first_is_quoted() {
        assert_eq!(
            message("a b"),
            "unexpected argument 'b' (ADDR is already 'a')"
        );
    }

    #[test]
    fn a_missing_positional_is_named() {
        assert_eq!(message("--trace"), "missing ADDR");
        assert_eq!(message(""), "missing ADDR");
    }

    #[test]
    fn a_lone_dash_is_a_positional() {
        assert_eq!(ok("-").positional(0), "-");
    }

    #[test]
    fn counts_are_checked_against_their_range_and_named() {
        assert_eq!(ok("a --backlog 8").count("--backlog", 0..=10, 3), Ok(8));
        assert_eq!(ok("a").count("--backlog", 0..=10, 3), Ok(3));
        let wrong = "--backlog must be a whole number from 0 to 10, not";
        for bad in ["11", "-1", "x", "1.5", "8k"] {
            let e = ok(&format!("a --backlog={bad}"))
                .count("--backlog", 0..=10, 3)
                .unwrap_err();
            assert_eq!(e.message, format!("{wrong} '{bad}'"));
        }
    }

    #[test]
    fn seconds_take_plain_decimals_above_zero() {
        let secs = |v: &str| ok(&format!("a --for={v}")).seconds("--for");
        assert_eq!(secs("30"), Ok(Some(Duration::from_secs(30))));
        assert_eq!(secs("0.5"), Ok(Some(Duration::from_millis(500))));
        assert_eq!(
            secs(&MAX_SECONDS.to_string()),
            Ok(Some(Duration::from_secs(MAX_SECONDS)))
        );
        assert_eq!(ok("a").seconds("--for"), Ok(None));
        for bad in [
            "0",
            "0.0",
            "-1",
            "inf",
            "NaN",
            "1e3",
            ".",
            "1.2.3",
            "5s",
            &(MAX_SECONDS + 1).to_string(),
        ] {
            let e = secs(bad).unwrap_err();
            assert!(
                e.message
                    .starts_with("--for must be a number of seconds above 0"),
                "{bad}: {e}"
            );
            assert!(e.message.ends_with(&format!("not '{bad}'")), "{bad}: {e}");
        }
    }

    #[test]
    fn durations_need_their_unit_and_are_exact() {
        let cases = [
            ("250us", Duration::from_micros(250)),
            ("250µs", Duration::from_micros(250)),
            ("5ms", Duration::from_millis(5)),
            ("1.5ms", Duration::from_micros(1_500)),
            ("2s", Duration::from_secs(2)),
            ("0.25s", Duration::from_millis(250)),
            ("0ms", Duration::ZERO),
            (".5s", Duration::from_millis(500)),
            ("0.0000000019s", Duration::from_nanos(1)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text), Some(expected), "{text}");
        }
        for bad in [
            "5",
            "5parsecs",
            "ms",
            "-5ms",
            "5 ms",
            "1e3ms",
            "inf s",
            "5m",
            "5ns",
            "1.2.3s",
            "",
            "99999999999999999999999s",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_duration_flag_names_the_units_and_its_maximum() {
        let spec = Spec {
            options: &[("--delay", "DUR")],
            ..SPEC
        };
        let p = |line: &str| parse(&spec, &words(line)).unwrap();
        let max = Duration::from_secs(30);
        assert_eq!(
            p("a --delay=5ms").duration("--delay", max),
            Ok(Some(Duration::from_millis(5)))
        );
        assert_eq!(p("a").duration("--delay", max), Ok(None));
        for bad in ["5parsecs", "31s"] {
            let e = p(&format!("a --delay {bad}"))
                .duration("--delay", max)
                .unwrap_err();
            assert_eq!(
                e.message,
                format!(
                    "--delay must be a duration from 0 to 30s with its unit (us, ms or s), as 250us, 5ms or 2s, not '{bad}'"
                )
            );
        }
    }

    #[test]
    fn probabilities_are_fractions_or_percentages_from_0_to_1() {
        for (text, expected) in [
            ("0", 0.0),
            ("1", 1.0),
            ("0.1", 0.1),
            ("10%", 0.1),
            ("12.5%", 0.125),
            ("100%", 1.0),
        ] {
            assert_eq!(parse_probability(text), Some(expected), "{text}");
        }
        for bad in [
            "1.5", "101%", "-0.1", "NaN", "inf", "1e-1", "%", "10%%", "ten", "",
        ] {
            assert_eq!(parse_probability(bad), None, "{bad:?}");
        }
        let spec = Spec {
            options: &[("--loss", "P")],
            ..SPEC
        };
        let e = parse(&spec, &words("a --loss 1.5"))
            .unwrap()
            .probability("--loss")
            .unwrap_err();
        assert_eq!(
            e.message,
            "--loss must be a probability from 0 to 1, as 0.1 or 10%, not '1.5'"
        );
    }

    #[test]
    fn a_usage_error_prints_the_problem_then_where_to_read_more() {
        let e = Usage::new("sockstep tcp listen", "missing ADDR");
        assert_eq!(
            e.to_string(),
            "sockstep tcp listen: missing ADDR\ntry 'sockstep tcp listen --help'"
        );
    }
}
