//! The `sockstep` program; everything it does is in [`sockstep::cli`].

fn main() -> std::process::ExitCode {
    sockstep::cli::run(std::env::args_os().skip(1))
}
