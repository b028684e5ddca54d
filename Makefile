# SPDX-License-Identifier: GPL-2.0-only
# dbwarden build, in the libbpf-bootstrap manner: vmlinux.h from the running
# kernel's BTF, one skeleton per bpf/*.bpf.c, one binary.
#
#   make            build .output/dbwarden
#   make run        install deps, build, start the agent with the embedded default
#   make test       install deps, build, run every unit and end-to-end test
#   make bench      install deps, build, run the benchmark (BENCH_QUICK=1 for a short one)
#   make V=1 ...    show the commands
OUTPUT := .output
CLANG ?= clang
BPFTOOL ?= bpftool
CC ?= cc
ARCH := $(shell uname -m | sed 's/x86_64/x86/;s/aarch64/arm64/')
PYTHON := /usr/bin/python3

CFLAGS ?= -O2 -g
CFLAGS += -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Wno-format-truncation \
	  -std=gnu11 -D_GNU_SOURCE -Iinclude -Iuserspace -I$(OUTPUT)
BPF_CFLAGS := -g -O2 -Wall -target bpf -mcpu=v3 -D__TARGET_ARCH_$(ARCH) \
	      -Iinclude -Ibpf -I$(OUTPUT)
LIBS := -lbpf -lelf -lz -ljansson -lyaml -lpg_query -lrdkafka -lssl -lcrypto -lpthread -lm

BPF_SRCS := $(wildcard bpf/*.bpf.c)
BPF_OBJS := $(patsubst bpf/%.bpf.c,$(OUTPUT)/%.bpf.o,$(BPF_SRCS))
SKELS := $(patsubst bpf/%.bpf.c,$(OUTPUT)/%.skel.h,$(BPF_SRCS))
LIB_SRCS := $(filter-out userspace/main.c,$(wildcard userspace/*.c))
LIB_OBJS := $(patsubst userspace/%.c,$(OUTPUT)/us/%.o,$(LIB_SRCS))
HDRS := $(wildcard include/*.h userspace/*.h)
# Unit tests are discovered, not listed: every tests/unit/test_*.c is one binary.
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(OUTPUT)/tests/%,$(UNIT_SRCS))
TEST_HELPERS := $(patsubst tests/helpers/%.c,$(OUTPUT)/tests/%,$(wildcard tests/helpers/*.c))
# BPF programs that unit tests run with BPF_PROG_TEST_RUN (the lexer, ...).
TEST_BPF_OBJS := $(patsubst tests/bpf/%.bpf.c,$(OUTPUT)/tests/%.bpf.o,$(wildcard tests/bpf/*.bpf.c))

ifeq ($(V),1)
	Q =
	msg =
else
	Q = @
	msg = @printf '  %-8s %s\n' "$(1)" "$(2)";
endif

.DELETE_ON_ERROR:
.SECONDARY: $(BPF_OBJS)
.PHONY: all deps run test unit e2e bench clean format check-format

all: $(OUTPUT)/dbwarden

deps:
	$(Q)scripts/install-deps

# The README's two commands. Both install what they need first.
run: deps
	$(Q)$(MAKE) --no-print-directory all
	$(OUTPUT)/dbwarden run $(ARGS)

test: deps
	$(Q)$(MAKE) --no-print-directory all unit-bins test-helpers
	$(Q)$(MAKE) --no-print-directory unit
	$(Q)$(MAKE) --no-print-directory e2e

bench: deps
	$(Q)$(MAKE) --no-print-directory all test-helpers
	$(PYTHON) bench/run.py

unit-bins: $(UNIT_BINS) $(TEST_BPF_OBJS)
test-helpers: $(TEST_HELPERS)

unit: $(UNIT_BINS) $(TEST_BPF_OBJS)
	$(Q)set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

e2e: $(OUTPUT)/dbwarden $(TEST_HELPERS)
	$(Q)DBW_BIN=$(abspath $(OUTPUT)/dbwarden) DBW_HELPERS=$(abspath $(OUTPUT)/tests) \
		$(PYTHON) -m pytest -q -p no:cacheprovider tests/e2e $(PYTEST_ARGS)

$(OUTPUT) $(OUTPUT)/us $(OUTPUT)/tests:
	$(Q)mkdir -p $@

$(OUTPUT)/vmlinux.h: | $(OUTPUT)
	$(call msg,GEN,$@)
	$(Q)$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > $@

$(OUTPUT)/%.bpf.o: bpf/%.bpf.c $(wildcard bpf/*.bpf.h) include/dbwarden_abi.h $(OUTPUT)/vmlinux.h | $(OUTPUT)
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(OUTPUT)/tests/%.bpf.o: tests/bpf/%.bpf.c $(wildcard bpf/*.bpf.h) include/dbwarden_abi.h $(OUTPUT)/vmlinux.h | $(OUTPUT)/tests
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(OUTPUT)/%.skel.h: $(OUTPUT)/%.bpf.o | $(OUTPUT)
	$(call msg,GEN-SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< > $@

$(OUTPUT)/us/%.o: userspace/%.c $(HDRS) $(SKELS) | $(OUTPUT)/us
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(OUTPUT)/libdbw.a: $(LIB_OBJS)
	$(call msg,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(OUTPUT)/dbwarden: $(OUTPUT)/us/main.o $(OUTPUT)/libdbw.a
	$(call msg,BINARY,$@)
	$(Q)$(CC) $(CFLAGS) $^ $(LIBS) -o $@

$(OUTPUT)/tests/test_%: tests/unit/test_%.c $(OUTPUT)/libdbw.a $(HDRS) | $(OUTPUT)/tests
	$(call msg,TEST,$@)
	$(Q)$(CC) $(CFLAGS) -Itests/unit -DDBW_TEST_BPF_DIR='"$(abspath $(OUTPUT)/tests)"' \
		$< $(OUTPUT)/libdbw.a $(LIBS) -lcmocka -o $@

# Small real clients and helpers the end-to-end tests drive (libpq, the
# Kafka mock cluster, ...).
$(OUTPUT)/tests/%: tests/helpers/%.c | $(OUTPUT)/tests
	$(call msg,HELPER,$@)
	$(Q)$(CC) $(CFLAGS) -I/usr/include/postgresql $< -lpq -lrdkafka -o $@

format:
	clang-format -i bpf/*.c bpf/*.h include/*.h userspace/*.c userspace/*.h tests/unit/*.c tests/helpers/*.c

clean:
	$(call msg,CLEAN)
	$(Q)rm -rf $(OUTPUT)
