# sockstep — the two commands a newcomer needs are `make run` and `make test`.

CARGO ?= cargo

.PHONY: run walk-tcp walk-tcp-slow walk-udp walk-udp-slow walk-http walk-push compare bench test lint fmt doc clean

## run: the TCP walkthrough on loopback (server and client, every step printed)
run: walk-tcp

walk-tcp:
	$(CARGO) run --quiet -- walk tcp

## walk-tcp-slow: the same, pausing after each step so you can follow along
walk-tcp-slow:
	$(CARGO) run --quiet -- walk tcp --slow

## walk-udp: the UDP walkthrough: the datagram socket's steps, then 1,000 datagrams through a lossy relay
walk-udp:
	$(CARGO) run --quiet -- walk udp

## walk-udp-slow: the same, pausing after each step of the lifecycle part
walk-udp-slow:
	$(CARGO) run --quiet -- walk udp --slow

## walk-http: HTTP on loopback: a connection per request (the seed's HTTP), then keep-alive
walk-http:
	$(CARGO) run --quiet -- walk http

## walk-push: the kept socket: two clients connect once, then messages flow both ways unasked
walk-push:
	$(CARGO) run --quiet -- walk push

## compare: the same updates by HTTP polling, long polling and push: connections, bytes, latency
compare:
	$(CARGO) run --release --quiet -- compare http-vs-socket

## bench: raw UDP, the reliable channel and TCP through 0-20% loss (optimised build; a minute or two;
##        as root with ip and nft the kernel loses the packets, otherwise the relay does and TCP is skipped)
bench:
	$(CARGO) run --release -- bench loss

## test: formatting, lints, then every unit, integration, property and doc test
test: lint
	$(CARGO) test

## lint: the build and the API docs must be warning-free, and the code formatted
lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --quiet

## fmt: format the code in place
fmt:
	$(CARGO) fmt

## doc: build the API docs (target/doc/sockstep/index.html)
doc:
	$(CARGO) doc --no-deps

clean:
	$(CARGO) clean
