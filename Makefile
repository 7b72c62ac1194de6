# Build and install netbridge: `make install` (as root) puts the binaries in
# /usr/local, the units in /etc/systemd/system and an example configuration in
# /etc/netbridge (as netbridge.toml.example: copy and edit it). DESTDIR installs into
# another root (the tests install into a Debian root booted with systemd-nspawn).

PREFIX ?= /usr/local
DESTDIR ?=
CARGO ?= cargo
# `make install PROFILE=dev` installs debug builds (the tests do, to reuse them).
PROFILE ?= release
BUILT := target/$(if $(filter dev,$(PROFILE)),debug,$(PROFILE))

.PHONY: all build install uninstall test demo

all: build

build:
	$(CARGO) build --profile $(PROFILE) --locked -p netbridge

install: build
	install -D -m 0755 $(BUILT)/netbridge $(DESTDIR)$(PREFIX)/bin/netbridge
	install -D -m 0755 $(BUILT)/netbridge-agent $(DESTDIR)$(PREFIX)/sbin/netbridge-agent
	install -D -m 0644 systemd/netbridge-agent.service $(DESTDIR)/etc/systemd/system/netbridge-agent.service
	sed -i 's|/usr/local/|$(PREFIX)/|' $(DESTDIR)/etc/systemd/system/netbridge-agent.service
	install -D -m 0644 systemd/netbridge-guest-forwarding.service $(DESTDIR)/etc/systemd/system/netbridge-guest-forwarding.service
	sed -i 's|/usr/local/|$(PREFIX)/|' $(DESTDIR)/etc/systemd/system/netbridge-guest-forwarding.service
	install -d -m 0755 $(DESTDIR)/etc/netbridge/conf.d
	# An example only: an active default would convert a NIC on first start.
	install -m 0644 configs/single-host.toml $(DESTDIR)/etc/netbridge/netbridge.toml.example
	install -D -m 0644 README.md $(DESTDIR)$(PREFIX)/share/doc/netbridge/README.md
	install -D -m 0644 configs/single-host.toml $(DESTDIR)$(PREFIX)/share/doc/netbridge/examples/single-host.toml
	install -D -m 0644 configs/fleet.toml $(DESTDIR)$(PREFIX)/share/doc/netbridge/examples/fleet.toml
	install -D -m 0644 configs/virtual-networks.toml $(DESTDIR)$(PREFIX)/share/doc/netbridge/examples/virtual-networks.toml

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/netbridge $(DESTDIR)$(PREFIX)/sbin/netbridge-agent
	rm -f $(DESTDIR)/etc/systemd/system/netbridge-agent.service
	rm -f $(DESTDIR)/etc/systemd/system/netbridge-guest-forwarding.service
	rm -rf $(DESTDIR)$(PREFIX)/share/doc/netbridge

test:
	scripts/test.sh

demo:
	scripts/demo.sh
