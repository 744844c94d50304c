fn main() {
    let r = sockstep::walk::tcp::run(&sockstep::walk::WalkOptions::default(), Box::new(std::io::stdout()));
    if let Err(e) = r { eprintln!("{e}"); std::process::exit(1); }
}
