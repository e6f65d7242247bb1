# certfleet - one plain Makefile.  `make` builds build/certfleet.
PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
MANDIR  ?= $(PREFIX)/share/man
SHAREDIR ?= $(PREFIX)/share/certfleet
DESTDIR ?=
BUILD   ?= build
CC      ?= cc
PKG_CONFIG ?= pkg-config
PKGS    := libssh2 openssl libcurl jansson jose

CFLAGS  ?= -O2 -g
WARN    := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wno-format-nonliteral \
           -Wstrict-prototypes -Wmissing-prototypes -Wvla
PKG_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null)
ALL_CFLAGS := -std=gnu11 $(WARN) -Iinclude -D_GNU_SOURCE -pthread \
              $(PKG_CFLAGS) $(CFLAGS)
LIBS    := $(PKG_LIBS) -pthread

SRCS    := $(wildcard src/*.c)
# The node-side scripts, embedded into the binary as C strings.
SCRIPTS := src/sh/preflight.sh src/sh/stage.sh src/sh/rollback.sh \
           src/sh/dirsafe.sh src/sh/audit.sh src/sh/keyclean.sh
OBJS    := $(SRCS:src/%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/scripts.o
LIBOBJS := $(filter-out $(BUILD)/obj/main.o,$(OBJS))
# private headers (src/*.h) too: their users must rebuild when they change
HDRS    := $(wildcard include/certfleet/*.h src/*.h)
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)

.PHONY: all deps unit test check demo bench fuzz install clean format

all: $(BUILD)/certfleet

# V=1 shows full command lines.
Q := $(if $(V),,@)

$(BUILD)/certfleet: $(OBJS)
	@echo "  LD      $@"
	$(Q)$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $(OBJS) $(LIBS)

$(BUILD)/obj/%.o: src/%.c $(HDRS) | $(BUILD)/obj
	@echo "  CC      $<"
	$(Q)$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/gen/scripts.c: src/sh/embed.sh $(SCRIPTS) | $(BUILD)/gen
	@echo "  EMBED   $@"
	$(Q)sh src/sh/embed.sh $(SCRIPTS) >$@.tmp && mv $@.tmp $@

$(BUILD)/obj/scripts.o: $(BUILD)/gen/scripts.c src/scripts.h | $(BUILD)/obj
	@echo "  CC      $<"
	$(Q)$(CC) $(ALL_CFLAGS) -Isrc -c -o $@ $<

$(BUILD)/obj $(BUILD)/tests $(BUILD)/gen:
	mkdir -p $@

unit: $(UNIT_BINS)

$(BUILD)/tests/%: tests/unit/%.c $(LIBOBJS) $(HDRS) $(wildcard tests/unit/*.h) | $(BUILD)/tests
	@echo "  CCLD    $@"
	$(Q)$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< $(LIBOBJS) $(LIBS) -lcmocka

# Installs missing Debian packages (root), then builds.
deps:
	sh tests/lib/deps.sh

# The whole suite: unit tests, playbook examples, end-to-end on real nodes.
test: deps
	$(MAKE) all unit
	BUILD=$(BUILD) sh tests/run.sh

# The same suite under ASan+UBSan (CHECK_TESTS="unit/ deploy" narrows it).
# The memcheck tests need a plain binary (valgrind cannot run an ASan one;
# `make test` runs them): the only tests allowed to skip here.
CHECK_TESTS ?=
CHECK_MAY_SKIP := t-valgrind t-valgrind-renew
check: deps
	$(MAKE) BUILD=build-asan CC=clang \
	  CFLAGS="-O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" \
	  all unit
	BUILD=build-asan ASAN_OPTIONS=detect_leaks=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  T_ALLOW_SKIP="$(CHECK_MAY_SKIP)" sh tests/run.sh "$(CHECK_TESTS)"

demo: deps
	$(MAKE) all
	sh tests/demo.sh

bench: deps
	$(MAKE) all
	sh tests/bench/run.sh

FUZZ_TIME ?= 60
fuzz: deps
	sh tests/fuzz/run.sh $(FUZZ_TIME)

SYSTEMDDIR ?= $(PREFIX)/lib/systemd/system

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SHAREDIR)/hooks \
	  $(DESTDIR)$(SHAREDIR)/playbooks $(DESTDIR)$(SHAREDIR)/prometheus \
	  $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 \
	  $(DESTDIR)$(SYSTEMDDIR)
	install -m 0755 $(BUILD)/certfleet $(DESTDIR)$(BINDIR)/certfleet
	install -m 0644 playbooks/*.json $(DESTDIR)$(SHAREDIR)/playbooks/
	for f in hooks/*; do [ -f "$$f" ] && install -m 0755 "$$f" $(DESTDIR)$(SHAREDIR)/hooks/ || true; done
	for f in hooks/prometheus/*; do [ -f "$$f" ] && install -m 0644 "$$f" $(DESTDIR)$(SHAREDIR)/prometheus/ || true; done
	# units name the binary by its installed path
	for f in hooks/systemd/*; do [ -f "$$f" ] && \
	  sed 's|/usr/local/bin/certfleet|$(BINDIR)/certfleet|g' "$$f" \
	    >$(DESTDIR)$(SYSTEMDDIR)/$$(basename "$$f") || true; done
	for f in docs/*.1; do [ -f "$$f" ] && install -m 0644 "$$f" $(DESTDIR)$(MANDIR)/man1/ || true; done
	for f in docs/*.5; do [ -f "$$f" ] && install -m 0644 "$$f" $(DESTDIR)$(MANDIR)/man5/ || true; done

format:
	clang-format -i src/*.c src/*.h include/certfleet/*.h tests/unit/*.c

clean:
	rm -rf build build-asan build-fuzz
