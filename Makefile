# bwrap-r: a Nomad task driver that runs each task in a bubblewrap sandbox.
GO     ?= go
NOMAD  := .cache/nomad/nomad
CONSUL := .cache/consul/consul
PLUGIN := bin/plugins/bwrap-r
# The launcher built as a shared object, for spares that are bwrap itself
# (bwrap/preload.c); the preload tag embeds it in the plugin. A plain go
# build works without it, and its spares exec bwrap: 1.1 to 1.4 ms more a
# start.
CC      ?= cc
PRELOAD := bwrap/preload.so
TAGS    := preload
# The driver harness leaves directories and plugin sockets in TMPDIR; keep
# them in one place that is traversable by task UIDs (bwrap runs as them).
TEST_TMP := $(CURDIR)/.cache/tmp
# What the e2e tests need: the agents they start.
E2E_ENV  := BWRAP_R_E2E=1 NOMAD_BIN=$(CURDIR)/$(NOMAD) CONSUL_BIN=$(CURDIR)/$(CONSUL)

.PHONY: all deps build nomad consul test test-v2 unit e2e demo demo-stop bench bench-node lint clean

all: build

deps:
	scripts/deps.sh

build: $(PRELOAD)
	$(GO) build -tags $(TAGS) -o $(PLUGIN) ./cmd/bwrap-r

# The object carries the hash of its sources: the plugin refuses one built
# from other sources than its own (bwrap/preload_embed.go).
LAUNCHER_SOURCES := bwrap/preload.c bwrap/shim.c bwrap/request.c bwrap/shim.h
$(PRELOAD): $(LAUNCHER_SOURCES)
	$(CC) -shared -fPIC -O2 -Wall -fvisibility=hidden -DSHIM_PRELOAD \
		-DSHIM_SOURCES_SHA256='"'"$$(cat $(LAUNCHER_SOURCES) | sha256sum | cut -d' ' -f1)"'"' \
		-o $@ $(filter %.c,$(LAUNCHER_SOURCES))

nomad:
	scripts/build-nomad.sh

# A Consul agent, for the e2e of script checks (Nomad runs them only for
# services registered in Consul).
consul:
	scripts/build-consul.sh

lint: $(PRELOAD)
	$(GO) vet ./...
	$(GO) vet -tags $(TAGS) ./...
	$(GO) vet -tags bench,$(TAGS) ./bench/
	@test -z "$$(gofmt -l $$(git ls-files "*.go"))" || { gofmt -l $$(git ls-files "*.go"); echo "gofmt: files above are not formatted"; exit 1; }

# Unit, sandbox, driver-harness and e2e tests (root needed: the launcher drops
# from root to each task's UID, and the e2e runs a real Nomad agent). The
# escape battery's two halves each add a line of counts to the summary: what
# a task can do from inside (e2e/escape_test.go), and the ways in
# (e2e/waysin_test.go).
test: deps nomad consul build lint
	@awk '$$5 ~ "^$(TEST_TMP)/" {print $$5}' /proc/self/mountinfo | sort -r | xargs -r umount -l
	@rm -rf $(TEST_TMP) && mkdir -p $(TEST_TMP) && chmod 0711 $(TEST_TMP)
	TMPDIR=$(TEST_TMP) $(E2E_ENV) BWRAP_R_WANT_PRELOAD=1 BWRAP_R_SUMMARY=$(TEST_TMP)/escape-summary $(GO) test -tags $(TAGS) -count=1 -timeout 40m ./...
	@cat $(TEST_TMP)/escape-summary
	# a smoke run of the benchmark code (3 tasks a driver), so that it does not rot
	TMPDIR=$(TEST_TMP) BWRAP_R_BENCH=smoke $(GO) test -tags bench,$(TAGS) -count=1 -timeout 10m ./bench/
	$(MAKE) --no-print-directory test-v2

# The sandbox, driver and preflight tests and an e2e subset on a cgroups v2
# kernel: a qemu guest of Debian's kernel and busybox with the host's / as its
# read-only root (scripts/v2-guest.sh; kernel and initramfs cached in
# .cache/v2-guest/). It fails if any test fails there.
test-v2: nomad $(PRELOAD)
	GO_TAGS=$(TAGS) NOMAD_BIN=$(CURDIR)/$(NOMAD) CONSUL_BIN=$(CURDIR)/$(CONSUL) scripts/v2-guest.sh

unit: $(PRELOAD)
	BWRAP_R_WANT_PRELOAD=1 $(GO) test -tags $(TAGS) -count=1 ./bwrap/ ./driver/

e2e: nomad consul build
	$(E2E_ENV) $(GO) test -tags $(TAGS) -count=1 -v ./e2e/

# Benchmarks against Nomad's raw_exec and exec drivers; writes BENCHMARKS.md.
# Not a test: run it on a quiet node.
bench: build
	@mkdir -p $(TEST_TMP) && chmod 0711 $(TEST_TMP)
	TMPDIR=$(TEST_TMP) BWRAP_R_BENCH=full $(GO) test -tags bench,$(TAGS) -count=1 -timeout 60m -v ./bench/
	# What a node pays per running task, through one real agent: bwrap-r with
	# 40, 500 and 1000 tasks, raw_exec and exec beside it (exec builds a chroot
	# a task: 40 take minutes).
	$(MAKE) --no-print-directory bench-node

bench-node: nomad consul build
	@mkdir -p $(TEST_TMP) && chmod 0711 $(TEST_TMP)
	$(E2E_ENV) BWRAP_R_NODE_BENCH=1 BWRAP_R_NODE_BENCH_OUT=$(CURDIR)/BENCHMARKS-node.md \
		$(GO) test -tags $(TAGS) -count=1 -v -timeout 60m -run "TestNodeCostPerTask|TestLogThroughput" ./e2e/

demo: deps nomad build
	scripts/demo.sh

demo-stop:
	-NOMAD_ADDR=http://127.0.0.1:4646 $(NOMAD) job stop -purge shiny
	-pid=$$(cat .cache/demo/agent.pid 2>/dev/null) && kill -INT $$pid 2>/dev/null && \
	  for i in $$(seq 1 100); do kill -0 $$pid 2>/dev/null || break; sleep 0.1; done
	# A dev agent that exits leaves its tasks' log collectors behind.
	-pkill -f '^$(CURDIR)/$(NOMAD) logmon' 2>/dev/null
	# the demo's managed egress rules (example/agent.hcl)
	-nft delete table inet bwrap_r 2>/dev/null

clean:
	rm -rf bin $(TEST_TMP) $(PRELOAD)
