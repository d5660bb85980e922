# LMKtorrent. `make demo` runs a local swarm; `make test` runs every test.
CARGO ?= cargo
BIN   := target/release
TRACKER ?= 127.0.0.1:6969

.PHONY: build test demo bench bench-swarm sim real-client fuzz fuzz-seeds run-tracker run-seeder run-leecher clean

build:
	$(CARGO) build --release

# Unit and integration tests, then the real BitTorrent client check.
test:
	$(CARGO) test --release
	$(MAKE) real-client

demo: build
	bash scripts/demo.sh

# Figures against references measured in the same run (~3 min); see docs/BENCHMARKS.md.
bench: build
	LMK_BIN_DIR=$(BIN) bash scripts/bench.sh

# A swarm on network namespaces with capped uplinks: LMK, aria2c and libtorrent
# against the fluid bound (root; 7-12 min). See scripts/bench-swarm.sh.
bench-swarm: build
	LMK_BIN_DIR=$(BIN) bash scripts/bench-swarm.sh

# The swarm simulator's standard set: real cores on a simulated network, N=100
# and N=1000 (see README "Simulator"); SEED=S replays another draw; OUT=dir
# writes per-peer lines and an SVG per row. About 20 min on one core.
SEED ?= 1
sim: build
	$(BIN)/lmk-sim --standard --seed $(SEED) $(if $(OUT),--out "$(OUT)")

# Real clients through lmk-tracker: aria2c, and libtorrent (two processes, two
# sessions in one process, a 60 s lifecycle at its own interval); about 70 s.
real-client:
	$(CARGO) build --release --bin lmk-tracker
	LMK_BIN_DIR=$(BIN) bash scripts/real-client.sh

# Every cargo-fuzz target in fuzz/ for SECONDS each, one after another (needs
# nightly and cargo-fuzz; see README "Fuzzing"). Exit 1 if any target failed.
SECONDS ?= 60
fuzz:
	bash scripts/fuzz.sh $(SECONDS) $(TARGETS)

# Rewrites fuzz/seeds/ from the encoders (after a wire change).
fuzz-seeds:
	cd fuzz && $(CARGO) +nightly run --example seeds

run-tracker: build
	$(BIN)/lmk-tracker --listen $(TRACKER) $(ARGS)

# A make variable as one shell word, whatever it holds (spaces, quotes, $,
# unicode): in single quotes, each ' written as '\''.
quote = '$(subst ','\'',$(1))'

# make run-seeder FILE=path   or   make run-seeder DIR=path
run-seeder: build
	@test -n "$(FILE)$(DIR)" || { echo "usage: make run-seeder FILE=path | DIR=path [ARGS=...]"; exit 2; }
	$(BIN)/lmk-seeder --tracker $(TRACKER) $(ARGS) -- $(if $(FILE),$(call quote,$(FILE))) $(if $(DIR),$(call quote,$(DIR)))

# make run-leecher NAME=file [OUT=dir]   (without NAME: list the catalog).
# OUT defaults to downloads/, which .gitignore lists.
run-leecher: build
	@if [ -n $(call quote,$(NAME)) ]; then \
	$(BIN)/lmk-leecher --tracker $(TRACKER) get --out $(call quote,$(or $(OUT),downloads)) $(ARGS) -- $(call quote,$(NAME)); \
	else $(BIN)/lmk-leecher --tracker $(TRACKER) list $(ARGS); fi

clean:
	$(CARGO) clean
