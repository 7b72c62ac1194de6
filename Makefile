# Build and install netbridge.
#
# `make deb` builds a Debian package (target/deb/netbridge_VERSION_ARCH.deb)
# from a clean checkout: install it with `apt install ./target/deb/netbridge_*.deb`.
#
# `make install` (as root) is the alternative: the binaries in /usr/local, the
# units in /etc/systemd/system, an example configuration in /etc/netbridge (as
# netbridge.toml.example: copy and edit it), manual pages and completions.
# DESTDIR installs into another root (the tests install into a Debian root
# booted with systemd-nspawn); `make deb` stages its tree the same way, with
# PREFIX=/usr and the vendor unit directory, so both install the same files.

PREFIX ?= /usr/local
DESTDIR ?=
CARGO ?= cargo
# `make install PROFILE=dev` installs debug builds (the tests do, to reuse them).
PROFILE ?= release
PROFILE_DIR := $(if $(filter dev,$(PROFILE)),debug,$(PROFILE))
# GLIBC=2.28 links against that glibc (through cargo-zigbuild and zig, from
# $(ZIG_VENV), where scripts/install-deps.sh puts them, or from PATH), so one
# build runs on every distribution from that glibc up; unset, the build needs
# the build machine's glibc. The packages are built that way (PACKAGE_GLIBC,
# RHEL 8's glibc, the oldest claimed: see the README); PACKAGE_GLIBC= packs
# a build for this machine's glibc instead.
GLIBC ?=
PACKAGE_GLIBC ?= 2.28
ZIG_VENV ?= /var/cache/netbridge-tests/zig-venv
ifeq ($(GLIBC),)
CARGO_BUILD := $(CARGO) build
BUILT := target/$(PROFILE_DIR)
else
export PATH := $(ZIG_VENV)/bin:$(PATH)
TARGET := $(shell rustc -vV | sed -n 's/^host: //p')
CARGO_BUILD := $(CARGO) zigbuild --target $(TARGET).$(GLIBC)
BUILT := target/$(TARGET)/$(PROFILE_DIR)
endif
# Where systemd finds the unit: the admin's directory for a local install,
# the vendor directory (/usr/lib/systemd/system) for a package.
UNITDIR ?= /etc/systemd/system
MANDIR ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
# zsh searches site-functions under /usr/local; Debian's zsh also vendor-completions under /usr.
ZSHCOMPDIR ?= $(PREFIX)/share/zsh/site-functions
FISHCOMPDIR ?= $(PREFIX)/share/fish/vendor_completions.d
DOCDIR ?= $(PREFIX)/share/doc/netbridge

VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
# The package's revision; the tests build a second one to upgrade to.
DEB_VERSION ?= $(VERSION)-1
DEB_OUT ?= target/deb
RPM_RELEASE ?= 1
RPM_OUT ?= target/rpm

.PHONY: all build man install uninstall deb rpm test demo

all: build

build:
	$(CARGO_BUILD) --profile $(PROFILE) --locked -p netbridge

# The manual pages, generated from the clap definitions and the configuration's key table.
# The generator is built like the binaries (same target and profile), so it reuses their
# compiled dependencies instead of compiling them all again for the machine's own target.
man:
	$(CARGO_BUILD) --profile $(PROFILE) --locked -q -p netbridge-mangen
	$(BUILT)/netbridge-mangen $(BUILT)/man

install: build man
	install -D -m 0755 $(BUILT)/netbridge $(DESTDIR)$(PREFIX)/bin/netbridge
	install -D -m 0755 $(BUILT)/netbridge-agent $(DESTDIR)$(PREFIX)/sbin/netbridge-agent
	install -d -m 0755 $(DESTDIR)$(UNITDIR)
	# The unit names the agent where this install puts it.
	sed 's|/usr/local/sbin/|$(PREFIX)/sbin/|' systemd/netbridge-agent.service \
		>$(DESTDIR)$(UNITDIR)/netbridge-agent.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/netbridge-agent.service
	sed 's|/usr/local/sbin/|$(PREFIX)/sbin/|; s|/usr/local/bin/|$(PREFIX)/bin/|' \
		systemd/netbridge-guest-forwarding.service \
		>$(DESTDIR)$(UNITDIR)/netbridge-guest-forwarding.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/netbridge-guest-forwarding.service
	install -d -m 0755 $(DESTDIR)/etc/netbridge/conf.d
	# An example only: an active default would convert a NIC on first start.
	install -m 0644 configs/single-host.toml $(DESTDIR)/etc/netbridge/netbridge.toml.example
	install -d -m 0755 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8
	install -m 0644 $(BUILT)/man/*.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 0644 $(BUILT)/man/*.5 $(DESTDIR)$(MANDIR)/man5/
	install -d -m 0755 $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(FISHCOMPDIR)
	$(BUILT)/netbridge completions bash >$(DESTDIR)$(BASHCOMPDIR)/netbridge
	$(BUILT)/netbridge completions zsh >$(DESTDIR)$(ZSHCOMPDIR)/_netbridge
	$(BUILT)/netbridge completions fish >$(DESTDIR)$(FISHCOMPDIR)/netbridge.fish
	install -D -m 0644 README.md $(DESTDIR)$(DOCDIR)/README.md
	install -D -m 0644 configs/single-host.toml $(DESTDIR)$(DOCDIR)/examples/single-host.toml
	install -D -m 0644 configs/fleet.toml $(DESTDIR)$(DOCDIR)/examples/fleet.toml
	install -D -m 0644 configs/virtual-networks.toml $(DESTDIR)$(DOCDIR)/examples/virtual-networks.toml

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/netbridge $(DESTDIR)$(PREFIX)/sbin/netbridge-agent
	rm -f $(DESTDIR)$(UNITDIR)/netbridge-agent.service
	rm -f $(DESTDIR)$(UNITDIR)/netbridge-guest-forwarding.service
	rm -f $(DESTDIR)$(MANDIR)/man8/netbridge*.8 $(DESTDIR)$(MANDIR)/man5/netbridge.toml.5
	rm -f $(DESTDIR)$(BASHCOMPDIR)/netbridge $(DESTDIR)$(ZSHCOMPDIR)/_netbridge $(DESTDIR)$(FISHCOMPDIR)/netbridge.fish
	rm -rf $(DESTDIR)$(DOCDIR)

# A Debian package: the tree `make install` stages with Debian's paths, then
# packaging/debian/build-deb.sh adds the metadata and runs dpkg-deb (see the README).
deb:
	rm -rf $(DEB_OUT)/root
	$(MAKE) install GLIBC=$(PACKAGE_GLIBC) DESTDIR=$(abspath $(DEB_OUT)/root) PREFIX=/usr \
		UNITDIR=/usr/lib/systemd/system ZSHCOMPDIR=/usr/share/zsh/vendor-completions
	packaging/debian/build-deb.sh $(DEB_OUT)/root $(DEB_VERSION) $(DEB_OUT)

# An RPM of the same files in Fedora/RHEL paths: the staged tree packed by
# rpmbuild with packaging/rpm/netbridge.spec (Debian's rpm package suffices).
rpm:
	rm -rf $(RPM_OUT)/root $(RPM_OUT)/build
	$(MAKE) install GLIBC=$(PACKAGE_GLIBC) DESTDIR=$(abspath $(RPM_OUT)/root) PREFIX=/usr UNITDIR=/usr/lib/systemd/system
	strip --strip-unneeded $(RPM_OUT)/root/usr/bin/netbridge $(RPM_OUT)/root/usr/sbin/netbridge-agent
	gzip -9n $(RPM_OUT)/root/usr/share/man/man*/*
	rpmbuild -bb --quiet --define '_topdir $(abspath $(RPM_OUT)/build)' \
		--define '_rpmdir $(abspath $(RPM_OUT))' --define '_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm' \
		--define 'staged $(abspath $(RPM_OUT)/root)' --define 'version $(VERSION)' \
		--define 'release $(RPM_RELEASE)' packaging/rpm/netbridge.spec

test:
	scripts/test.sh

demo:
	scripts/demo.sh
