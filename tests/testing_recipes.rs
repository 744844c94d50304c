//! The recipes of `docs/testing-with-sockstep.md` are run as doctests (the
//! guide is included into `src/testkit/mod.rs` under `cfg(doctest)`), so the
//! code a reader copies is code that ran. This test guards that arrangement:
//! every recipe has a Rust block that rustdoc will really run, and the guide
//! is still included where rustdoc finds it.

const GUIDE: &str = include_str!("../docs/testing-with-sockstep.md");
const TESTKIT: &str = include_str!("../src/testkit/mod.rs");

/// The one recipe that needs root and the sockstep binary: not a doctest, but
/// the body of a test in `tests/two_hosts.rs`, which CI runs as root.
const TWO_HOSTS_RECIPE: &str = "Recipe 6";
const TWO_HOSTS_TESTS: &str = include_str!("two_hosts.rs");

/// The recipes: each `## Recipe` section's title and text.
fn recipes() -> Vec<(&'static str, &'static str)> {
    GUIDE
        .split("\n## ")
        .skip(1)
        .filter(|section| section.starts_with("Recipe "))
        .map(|section| section.split_once('\n').unwrap_or((section, "")))
        .collect()
}

/// The info strings of the fenced code blocks that open in `text`.
fn fences(text: &str) -> Vec<&str> {
    let mut open = false;
    let mut infos = Vec::new();
    for line in text.lines() {
        if let Some(info) = line.trim_start().strip_prefix("```") {
            if !open {
                infos.push(info.trim());
            }
            open = !open;
        }
    }
    infos
}

#[test]
fn the_guide_has_six_recipes() {
    let titles: Vec<&str> = recipes().iter().map(|(title, _)| *title).collect();
    assert_eq!(titles.len(), 6, "{titles:?}");
}

#[test]
fn the_two_hosts_recipe_is_the_body_of_a_test_that_runs() {
    let (_, text) = recipes()
        .into_iter()
        .find(|(title, _)| title.starts_with(TWO_HOSTS_RECIPE))
        .expect("the two-hosts recipe");
    let block = text
        .split("```rust,no_run\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("a rust,no_run block");
    let shown: Vec<&str> = block.lines().filter(|l| !l.starts_with("# ")).collect();
    let body = TWO_HOSTS_TESTS
        .split("    // recipe: begin\n")
        .nth(1)
        .and_then(|rest| rest.split("    // recipe: end\n").next())
        .expect("the recipe markers in tests/two_hosts.rs");
    let tested: Vec<&str> = body
        .lines()
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect();
    assert_eq!(
        shown, tested,
        "the guide's recipe 6 and tests/two_hosts.rs have drifted apart"
    );
}

#[test]
fn every_recipe_has_a_rust_block_that_rustdoc_runs_and_that_asserts() {
    for (title, text) in recipes() {
        if title.starts_with(TWO_HOSTS_RECIPE) {
            continue; // run by tests/two_hosts.rs; see the test above
        }
        let rust: Vec<&str> = fences(text)
            .into_iter()
            .filter(|info| *info == "rust" || info.starts_with("rust,"))
            .collect();
        assert!(!rust.is_empty(), "recipe {title:?} has no rust block");
        for info in rust {
            for skip in ["ignore", "no_run", "compile_fail", "should_panic"] {
                assert!(
                    !info.contains(skip),
                    "recipe {title:?}: ```{info} would not run"
                );
            }
        }
        assert!(text.contains("assert"), "recipe {title:?} asserts nothing");
    }
}

#[test]
fn the_guide_is_included_as_doctests() {
    assert!(
        TESTKIT.contains("#[cfg(doctest)]")
            && TESTKIT.contains(r#"include_str!("../../docs/testing-with-sockstep.md")"#),
        "src/testkit/mod.rs no longer includes the guide; its recipes would not be run"
    );
}

#[test]
fn the_guide_shows_both_ways_to_depend_on_sockstep() {
    assert!(GUIDE.contains("[dev-dependencies]"));
    assert!(GUIDE.contains("sockstep = { git = "));
    assert!(GUIDE.contains("sockstep = { path = "));
}
