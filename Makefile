# sockstep — the two commands a newcomer needs are `make run` and `make test`.

CARGO ?= cargo

.PHONY: run walk-tcp walk-tcp-slow walk-udp walk-udp-slow walk-http walk-push walk-hosts compare bench bench-loss test lint fmt doc docs syscalls clean

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

## walk-hosts: two hosts on one machine (root: network namespaces): the IP address names the host, the port the process
walk-hosts:
	$(CARGO) run --quiet -- walk hosts

## compare: the same updates by HTTP polling, long polling and push: connections, bytes, latency
compare:
	$(CARGO) run --release --quiet -- compare http-vs-socket

## bench: every benchmark, optimised build, a few minutes on 2 cores: ours beside a raw std loop and
##        the peer tools found (iperf3, wrk, nginx; nothing is installed), tables on stdout, plots
##        into docs/img (see docs/BENCHMARKS.md). Quote numbers from a quiet machine.
bench:
	@for tool in iperf3 wrk nginx; do \
	  if command -v $$tool >/dev/null 2>&1 || [ -x /usr/sbin/$$tool ]; then echo "peer tool found: $$tool"; \
	  else echo "peer tool not installed: $$tool (its rows are skipped)"; fi; \
	done
	$(CARGO) run --release -- bench all --svg docs/img

## bench-loss: only raw UDP, the reliable channel and TCP through 0-20% loss (a minute or two; as root
##        with ip and nft the kernel loses the packets, otherwise the relay does and TCP is skipped)
bench-loss:
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

## docs: redraw docs/img/ from fresh runs: each walkthrough's sequence diagram, as SVG and Mermaid
##       (walk hosts only as root, since it builds network namespaces; skipped with a message otherwise)
docs:
	@mkdir -p docs/img
	@for walk in tcp udp http push; do \
		$(CARGO) run --quiet -- walk $$walk --svg docs/img/walk-$$walk.svg --mermaid docs/img/walk-$$walk.mmd > /dev/null || exit 1; \
	done
	@if [ "$$(id -u)" != 0 ]; then \
		echo "make docs: skipped walk hosts: it needs root (it builds two network namespaces); docs/img/walk-hosts.* left as they are"; \
	elif ! $(CARGO) run --quiet -- walk hosts --help | grep -q -- --svg; then \
		echo "make docs: skipped walk hosts: it draws no pictures yet (no --svg)"; \
	else \
		$(CARGO) run --quiet -- walk hosts --svg docs/img/walk-hosts.svg --mermaid docs/img/walk-hosts.mmd > /dev/null || exit 1; \
	fi

## syscalls: docs/syscalls.md: each walkthrough under strace -f, each seed step's system calls (needs strace)
syscalls:
	@if command -v strace > /dev/null; then \
		$(CARGO) test --quiet --test syscall_map -- --ignored --exact regenerate_docs_syscalls_md; \
	else \
		echo "make syscalls: skipped: strace is not installed (apt-get install strace); docs/syscalls.md left as it is"; \
	fi

## doc: build the API docs (target/doc/sockstep/index.html)
doc:
	$(CARGO) doc --no-deps

clean:
	$(CARGO) clean
