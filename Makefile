# sockstep — the two commands a newcomer needs are `make run` and `make test`.

CARGO ?= cargo

.PHONY: run walk-tcp walk-tcp-slow test lint fmt check doc clean

## run: the TCP walkthrough on loopback (server and client, every step printed)
run: walk-tcp

walk-tcp:
	$(CARGO) run --quiet -- walk tcp

## walk-tcp-slow: the same, pausing after each step so you can follow along
walk-tcp-slow:
	$(CARGO) run --quiet -- walk tcp --slow

## test: formatting, lints, then every unit, integration, property and doc test
test: lint
	$(CARGO) test

## lint: the build must be warning-free and formatted
lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

## fmt: format the code in place
fmt:
	$(CARGO) fmt

## doc: build the API docs (target/doc/sockstep/index.html)
doc:
	$(CARGO) doc --no-deps

clean:
	$(CARGO) clean
