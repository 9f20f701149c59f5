# mrtd: make run builds everything and runs the main job; make test runs the
# whole suite. See README.md.

SHELL := /bin/bash
GO ?= go
export GOFLAGS := -buildvcs=false

BUILD := build
RUNC_VERSION := $(shell awk '$$1 == "require" && $$2 == "github.com/opencontainers/runc" { print $$3 } \
	$$1 == "github.com/opencontainers/runc" { print $$2 }' tools/runc/go.mod)
# debootstrap (and reading what it made) needs root.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
DEB_PACKAGES := debootstrap libseccomp-dev pkg-config gcc libc6-dev systemd uidmap

# Not into build/: the debootstrap tree there is root's, partly unreadable.
GO_FILES := $(shell find . \( -path ./$(BUILD) -o -path ./tools/runc -o -path ./.git \) -prune -o -name '*.go' -print)
GO_SOURCES := $(GO_FILES) go.mod go.sum
EMBEDDED := rootfs/embedded

.PHONY: all run test e2e e2e-deps e2e-rootfs bench bench-deps soak install deps runc init rootfs clean distclean fmt-check FORCE

all: bin/mrtd

## run: the main job, a pool of 4 demo workers (Ctrl-C stops it).
run: bin/mrtd
	bin/mrtd --workers 4

# install-debs installs the Debian packages $(1) that are missing, as root;
# otherwise it prints the exact sudo command and fails.
define install-debs
	@missing=$$(for p in $(1); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
		echo "apt-get install -y" $$missing; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	else \
		echo "make: missing Debian packages; run: sudo apt-get install -y" $$missing >&2; exit 1; \
	fi
endef

## deps: install the Debian packages the build needs (as root), or say how.
deps:
	$(call install-debs,$(DEB_PACKAGES))

## runc: compile the pinned runc release from the Go module proxy, static, with seccomp.
runc: $(BUILD)/runc
$(BUILD)/runc: tools/runc/go.mod tools/runc/go.sum | deps
	@mkdir -p $(BUILD)
	@test -n "$(RUNC_VERSION)" || { echo "make: no runc version in tools/runc/go.mod" >&2; exit 1; }
	@echo "building runc $(RUNC_VERSION) from the Go module proxy"
	cd tools/runc && CGO_ENABLED=1 $(GO) build -trimpath \
		-tags "seccomp urfave_cli_no_docs netgo osusergo" \
		-ldflags "-s -w -X main.version=$(RUNC_VERSION:v%=%) -X main.gitCommit=$(RUNC_VERSION) -extldflags -static" \
		-o $(CURDIR)/$@.tmp github.com/opencontainers/runc
	mv $@.tmp $@
	$@ --version | head -1

## init: the init of --init, Debian's tini-static (static, MIT; Docker's
## docker-init), from the .deb that tools/init/SHA256SUMS pins: fetched with
## apt-get download into $(BUILD)/debs, checked, and never installed.
INIT_SUMS := tools/init/SHA256SUMS
DEB_ARCH := $(shell dpkg --print-architecture 2>/dev/null)
INIT_DEB := $(shell awk '$$2 ~ /^tini_[^_]+_$(DEB_ARCH)\.deb$$/ { print $$2 }' $(INIT_SUMS))
INIT_VERSION := $(word 2,$(subst _, ,$(INIT_DEB)))
init: $(BUILD)/init
$(BUILD)/init: $(INIT_SUMS)
	@test -n "$(INIT_DEB)" || { echo "make: $(INIT_SUMS) pins no tini .deb for $(or $(DEB_ARCH),this architecture)" >&2; exit 1; }
	@mkdir -p $(BUILD)/debs
	@if [ ! -f $(BUILD)/debs/$(INIT_DEB) ]; then \
		echo "apt-get download tini=$(INIT_VERSION)"; \
		(cd $(BUILD)/debs && apt-get download -q 'tini=$(INIT_VERSION)') || \
		{ [ "$$(id -u)" = 0 ] && apt-get update -q && (cd $(BUILD)/debs && apt-get download -q 'tini=$(INIT_VERSION)'); } || \
		{ echo "make: cannot download tini $(INIT_VERSION); run: (cd $(CURDIR)/$(BUILD)/debs && apt-get download 'tini=$(INIT_VERSION)'), after sudo apt-get update, or copy $(INIT_DEB) there" >&2; exit 1; }; \
	fi
	@echo "checking $(INIT_DEB) against $(INIT_SUMS)"
	@cd $(BUILD)/debs && grep -F '  $(INIT_DEB)' $(CURDIR)/$(INIT_SUMS) | sha256sum --check --strict --quiet - || \
		{ echo "make: $(BUILD)/debs/$(INIT_DEB) is not the .deb $(INIT_SUMS) pins: remove it and run make again" >&2; exit 1; }
	@v="$$(dpkg-deb -f $(BUILD)/debs/$(INIT_DEB) Package) $$(dpkg-deb -f $(BUILD)/debs/$(INIT_DEB) Version)"; \
		test "$$v" = "tini $(INIT_VERSION)" || { echo "make: $(INIT_DEB) holds $$v, not tini $(INIT_VERSION)" >&2; exit 1; }
	rm -rf $(BUILD)/init.deb && dpkg-deb -x $(BUILD)/debs/$(INIT_DEB) $(BUILD)/init.deb
	cp $(BUILD)/init.deb/usr/bin/tini-static $@.tmp && rm -rf $(BUILD)/init.deb
	chmod 0755 $@.tmp && mv $@.tmp $@
	$@ --version

# ROOTFS_IMAGE=REF: the embedded default rootfs is the image REF flattened
# (`make ROOTFS_IMAGE=registry.example.org/team/worker:2`), instead of the
# debootstrap tree: one binary that carries the user's worker image. REF is
# what `mrtd --image` takes: [REGISTRY/]REPO[:TAG], @sha256:DIGEST,
# oci:PATH[:TAG] or docker-archive:PATH; ROOTFS_IMAGE_FLAGS passes
# tools/flatten's -platform os/arch or -tls-verify=false. tools/flatten
# fetches it and flattens its layers as mrtd does (package image,
# rootfs.Cache.Image: whiteouts, hardlinks, setuid dropped, no escapes),
# tools/pack packs the tree; the image config (Entrypoint, Env...) is not
# embedded, only written beside it as $(BUILD)/image-rootfs.config.json.
# The archive is remade when ROOTFS_IMAGE changes (recorded in
# $(BUILD)/rootfs.source); a tag that moved needs
# `rm $(BUILD)/image-rootfs.tar.zst`. Without ROOTFS_IMAGE (the default),
# and again after it, the debootstrap rootfs is embedded.
ROOTFS_IMAGE ?=
ROOTFS_IMAGE_FLAGS ?=
ROOTFS_ARCHIVE := $(if $(ROOTFS_IMAGE),$(BUILD)/image-rootfs.tar.zst,$(BUILD)/rootfs.tar.zst)

# NAME=N PACKAGES="P ...": `make rootfs NAME=gearman-worker
# PACKAGES=gearman-tools` builds $(BUILD)/rootfs-N.tar.zst (and its
# .sha256) for `mrtd --rootfs`: the default rootfs with the Debian packages
# P (space- or comma-separated) and their dependencies, slimmed and packed
# the same way. It is remade when PACKAGES changes (recorded in
# $(BUILD)/rootfs-N.packages); the default rootfs and the embedded one are
# not touched. Both are read from make's command line only, so that a NAME
# in the environment changes nothing.
comma := ,
ROOTFS_NAME := $(if $(filter command line,$(origin NAME)),$(NAME))
ROOTFS_PACKAGES := $(if $(filter command line,$(origin PACKAGES)),$(strip $(subst $(comma), ,$(PACKAGES))))
ifneq ($(ROOTFS_NAME),)
ifeq ($(shell echo '$(subst ',!,$(ROOTFS_NAME))' | grep -Ex '[a-z0-9][a-z0-9._-]{0,63}'),)
$(error NAME=$(ROOTFS_NAME): a rootfs name is lowercase letters, digits, '.', '_' and '-', starting with a letter or digit)
endif
ifneq ($(ROOTFS_PACKAGES),)
ifeq ($(shell echo '$(subst ',!,$(ROOTFS_PACKAGES))' | grep -Ex '[a-z0-9][a-z0-9.+-]*( [a-z0-9][a-z0-9.+-]*)*'),)
$(error PACKAGES="$(ROOTFS_PACKAGES)": Debian package names are lowercase letters, digits, '.', '+' and '-')
endif
endif
ROOTFS_NAMED := $(BUILD)/rootfs-$(ROOTFS_NAME).tar.zst
else ifneq ($(ROOTFS_PACKAGES),)
$(error PACKAGES needs NAME: make rootfs NAME=N PACKAGES="$(ROOTFS_PACKAGES)" builds $(BUILD)/rootfs-N.tar.zst)
endif

## rootfs: Debian bookworm minbase + python3, slimmed and packed deterministically;
## with ROOTFS_IMAGE=REF, the image REF flattened instead (see above); with
## NAME=N PACKAGES="P ...", $(BUILD)/rootfs-N.tar.zst with those packages added.
rootfs: $(or $(ROOTFS_NAMED),$(ROOTFS_ARCHIVE))
$(BUILD)/rootfs.tar.zst: tools/rootfs/build.sh tools/rootfs/mrtd-demo-worker | deps
	@mkdir -p $(BUILD)
	$(SUDO) rm -rf $(BUILD)/rootfs $(BUILD)/rootfs.tmp
	$(SUDO) tools/rootfs/build.sh $(BUILD)/rootfs
	$(GO) build -o $(BUILD)/pack ./tools/pack
	$(SUDO) $(BUILD)/pack -o $@ $(BUILD)/rootfs
	$(SUDO) chown $$(id -u):$$(id -g) $@ $@.sha256
	@cat $@.sha256

ifneq ($(ROOTFS_NAME),)
$(BUILD)/rootfs-$(ROOTFS_NAME).packages: FORCE
	@mkdir -p $(BUILD)
	@echo '$(ROOTFS_PACKAGES)' | cmp -s - $@ || echo '$(ROOTFS_PACKAGES)' > $@

# The tree is removed once packed: the archive is what --rootfs takes.
$(ROOTFS_NAMED): $(BUILD)/rootfs-$(ROOTFS_NAME).packages tools/rootfs/build.sh tools/rootfs/mrtd-demo-worker | deps
	$(SUDO) rm -rf $(BUILD)/rootfs-$(ROOTFS_NAME) $(BUILD)/rootfs-$(ROOTFS_NAME).tmp
	$(SUDO) tools/rootfs/build.sh $(BUILD)/rootfs-$(ROOTFS_NAME) $(ROOTFS_PACKAGES)
	$(GO) build -o $(BUILD)/pack ./tools/pack
	$(SUDO) $(BUILD)/pack -o $@ $(BUILD)/rootfs-$(ROOTFS_NAME)
	$(SUDO) rm -rf $(BUILD)/rootfs-$(ROOTFS_NAME)
	$(SUDO) chown $$(id -u):$$(id -g) $@ $@.sha256
	@cat $@.sha256
endif

# Rewritten only when ROOTFS_IMAGE changes, so that the embedded archive
# follows it both ways.
$(BUILD)/rootfs.source: FORCE
	@mkdir -p $(BUILD)
	@echo '$(ROOTFS_IMAGE)' | cmp -s - $@ || echo '$(ROOTFS_IMAGE)' > $@

$(BUILD)/image-rootfs.tar.zst: $(BUILD)/rootfs.source
	@test -n "$(ROOTFS_IMAGE)" || { echo "make: $@ is made with ROOTFS_IMAGE=REF" >&2; exit 1; }
	$(GO) build -o $(BUILD)/flatten ./tools/flatten
	$(GO) build -o $(BUILD)/pack ./tools/pack
	$(BUILD)/flatten -o $(BUILD)/image-rootfs -config $(BUILD)/image-rootfs.config.json $(ROOTFS_IMAGE_FLAGS) '$(ROOTFS_IMAGE)'
	$(BUILD)/pack -o $@ $(BUILD)/image-rootfs
	chmod -R u+rwX $(BUILD)/image-rootfs && rm -rf $(BUILD)/image-rootfs
	@cat $@.sha256

FORCE:

$(EMBEDDED)/runc: $(BUILD)/runc
	@mkdir -p $(EMBEDDED)
	cp $< $@
	cd $(EMBEDDED) && sha256sum runc > runc.sha256
	$< --version | awk 'NR == 1 { print $$3 }' > $(EMBEDDED)/runc.version

$(EMBEDDED)/init: $(BUILD)/init
	@mkdir -p $(EMBEDDED)
	cp $< $@
	cd $(EMBEDDED) && sha256sum init > init.sha256
	echo 'tini $(INIT_VERSION)' > $(EMBEDDED)/init.version

$(EMBEDDED)/rootfs.tar.zst: $(ROOTFS_ARCHIVE) $(BUILD)/rootfs.source
	@mkdir -p $(EMBEDDED)
	cp $< $@
	cp $<.sha256 $@.sha256

# mrtd's version: the git description of the checkout (GOFLAGS has
# -buildvcs=false, so the build info carries none).
MRTD_VERSION := $(or $(shell git describe --tags --always --dirty 2>/dev/null),unknown)

bin/mrtd: $(GO_SOURCES) $(EMBEDDED)/runc $(EMBEDDED)/init $(EMBEDDED)/rootfs.tar.zst
	@mkdir -p bin
	CGO_ENABLED=0 $(GO) build -trimpath -tags mrtd_assets -ldflags "-s -w -X main.version=$(MRTD_VERSION)" -o $@ ./cmd/mrtd

fmt-check:
	@out=$$(gofmt -l $(GO_FILES)); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

## test: gofmt, vet, and every test with -race, integration tests included.
test: fmt-check $(BUILD)/runc bin/mrtd
	$(GO) vet ./...
	MRTD_INTEGRATION=1 MRTD_RUNC=$(CURDIR)/$(BUILD)/runc MRTD_BIN=$(CURDIR)/bin/mrtd \
		$(GO) test -race -count=1 ./...

## e2e: the image tests against a real registry on 127.0.0.1 (Debian's
## docker-registry, images pushed with skopeo), and the Gearman tests: Debian's
## gearmand and gearman client, workers from a rootfs built with gearman-tools,
## on one host and on several simulated with network namespaces; installs the
## packages as root, or says how.
E2E_DEB_PACKAGES := docker-registry skopeo gearman-job-server gearman-tools iproute2
e2e-deps:
	$(call install-debs,$(E2E_DEB_PACKAGES))

# The Gearman tests' worker rootfs: built once (debootstrap), then reused.
GEARMAN_ROOTFS := $(BUILD)/rootfs-gearman-worker.tar.zst
e2e-rootfs:
	$(MAKE) rootfs NAME=gearman-worker PACKAGES=gearman-tools

e2e: e2e-deps e2e-rootfs $(BUILD)/runc bin/mrtd
	MRTD_INTEGRATION=1 MRTD_E2E_REGISTRY=1 MRTD_E2E_GEARMAN_ROOTFS=$(CURDIR)/$(GEARMAN_ROOTFS) \
		MRTD_RUNC=$(CURDIR)/$(BUILD)/runc MRTD_BIN=$(CURDIR)/bin/mrtd \
		$(GO) test -race -count=1 -timeout 30m -run 'Image|Gearman' ./e2e/

## bench: ratios against raw runc, measured in the same run, ending with issue 11's table
## (BENCH_FLAGS="-n 10" for fewer runs; "-issue11-only" for that table alone, "-standby-only"
## for the --standby figures, "-image-only" for the image figures). The image figures need docker-registry,
## skopeo and umoci: bench-deps installs them as root; as a user without them,
## bench says so and skips those figures.
BENCH_DEB_PACKAGES := docker-registry skopeo umoci
bench-deps:
	@missing=$$(for p in $(BENCH_DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
		echo "apt-get install -y" $$missing; \
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; } || \
			echo "make: bench: installing" $$missing "failed: the image figures will be skipped" >&2; \
	else \
		echo "make: bench: no" $$missing "(sudo apt-get install -y" $$missing"): the image figures will be skipped" >&2; \
	fi

bench: bench-deps $(BUILD)/runc bin/mrtd
	$(GO) run ./tools/bench -runc $(CURDIR)/$(BUILD)/runc -mrtd $(CURDIR)/bin/mrtd -archive $(CURDIR)/$(ROOTFS_ARCHIVE) $(BENCH_FLAGS)

## soak: kill random workers of a pool for a while (SOAK_FLAGS="-duration 60s -workers 16", "-standby"); not part of test.
soak: bin/mrtd
	$(GO) run ./tools/soak -mrtd $(CURDIR)/bin/mrtd $(SOAK_FLAGS)

## install: bin/mrtd into $(PREFIX)/bin and the user unit into $(UNITDIR).
PREFIX ?= $(HOME)/.local
UNITDIR ?= $(or $(XDG_CONFIG_HOME),$(HOME)/.config)/systemd/user
install: bin/mrtd
	install -D -m 0755 bin/mrtd $(DESTDIR)$(PREFIX)/bin/mrtd
	install -d $(DESTDIR)$(UNITDIR)
	for u in mrtd.service mrtd@.service; do \
		sed 's|%h/.local/bin/mrtd|$(if $(filter $(HOME)/.local,$(PREFIX)),%h/.local,$(PREFIX))/bin/mrtd|' \
			deploy/systemd/$$u > $(DESTDIR)$(UNITDIR)/$$u || exit 1; \
	done
	@echo "installed; now: systemctl --user daemon-reload && systemctl --user enable --now mrtd"

## clean: remove what is quick to rebuild; keeps the rootfs.
clean:
	rm -rf bin $(EMBEDDED) $(BUILD)/runc $(BUILD)/init $(BUILD)/pack $(BUILD)/flatten

## distclean: remove every build output, the rootfs included.
distclean: clean
	$(SUDO) rm -rf $(BUILD)
