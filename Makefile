# SPDX-License-Identifier: GPL-2.0-only
# dbwarden build, in the libbpf-bootstrap manner: vmlinux.h from the running
# kernel's BTF, one skeleton per bpf/*.bpf.c, one binary.
#
#   make            build .output/dbwarden
#   make run        install deps, build, start the agent with the embedded default
#   make test       install deps, build, run every unit and end-to-end test
#   make bench      install deps, build, run the benchmark (BENCH_QUICK=1 for a short one)
#   make bench-detect  the masking detectors' throughput on one core
#   make bench-mask    a 100,000-row SELECT, masked in the kernel vs not
#   make soak       30 minutes of mixed clients against one agent (SOAK_MINUTES=N)
#   make fuzz       libFuzzer targets over the parsers, FUZZ_SECONDS each (default 60)
#   make V=1 ...    show the commands
OUTPUT := .output
SHELL := /bin/bash
CLANG ?= clang
BPFTOOL ?= bpftool
CC ?= cc
ARCH := $(shell uname -m | sed 's/x86_64/x86/;s/aarch64/arm64/')
PYTHON := /usr/bin/python3

CFLAGS ?= -O2 -g
CFLAGS += -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Wno-format-truncation \
	  -std=gnu11 -D_GNU_SOURCE -Iinclude -Iuserspace -I$(OUTPUT) -I/usr/include/postgresql
BPF_CFLAGS := -g -O2 -Wall -target bpf -mcpu=v3 -D__TARGET_ARCH_$(ARCH) \
	      -Iinclude -Ibpf -I$(OUTPUT)
LIBS := -lbpf -lelf -lz -ljansson -lyaml -lpg_query -lpq -lcurl -lrdkafka -lssl -lcrypto -lcapstone -lhs -lpthread -lm

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
# keep every intermediate (objects, skeletons): no rebuild of what is there
.SECONDARY:
.PHONY: all deps run test unit e2e bench bench-detect bench-mask soak clean format check-format unit-san e2e-san fuzz

all: $(OUTPUT)/dbwarden

deps:
	$(Q)scripts/install-deps

# The README's two commands. Both install what they need first.
run: deps
	$(Q)$(MAKE) --no-print-directory all
	$(OUTPUT)/dbwarden run $(ARGS)

test: deps
	$(Q)$(MAKE) --no-print-directory all unit-bins test-helpers san-bins
	$(Q)$(MAKE) --no-print-directory unit
	$(Q)$(MAKE) --no-print-directory unit-san
	$(Q)$(MAKE) --no-print-directory e2e
	$(Q)$(MAKE) --no-print-directory e2e-san

bench: deps
	$(Q)$(MAKE) --no-print-directory all test-helpers
	$(PYTHON) bench/run.py

# the detectors' throughput on one core (README "Masking")
bench-detect: $(OUTPUT)/bench_detect
	$(OUTPUT)/bench_detect $(BENCH_SECONDS)

# a 100,000-row SELECT read by a masked client, an unmasked one, and with no agent
bench-mask: all
	DBW_BIN=$(abspath $(OUTPUT)/dbwarden) $(PYTHON) bench/mask_bench.py

$(OUTPUT)/bench_detect: bench/detect_bench.c $(OUTPUT)/libdbw.a $(HDRS)
	$(call msg,BENCH,$@)
	$(Q)$(CC) $(CFLAGS) $< $(OUTPUT)/libdbw.a $(LIBS) -o $@

# SOAK_MINUTES (default 30) of mixed clients: flat memory and fds, nothing lost
soak: deps
	$(Q)$(MAKE) --no-print-directory all
	$(PYTHON) bench/soak.py

unit-bins: $(UNIT_BINS) $(TEST_BPF_OBJS)
test-helpers: $(TEST_HELPERS)

unit: $(UNIT_BINS) $(TEST_BPF_OBJS)
	$(Q)set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

e2e: $(OUTPUT)/dbwarden $(TEST_HELPERS)
	$(Q)DBW_BIN=$(abspath $(OUTPUT)/dbwarden) DBW_HELPERS=$(abspath $(OUTPUT)/tests) \
		$(PYTHON) -m pytest -q -p no:cacheprovider tests/e2e $(PYTEST_ARGS)

# The same code under AddressSanitizer + UndefinedBehaviorSanitizer: the unit
# tests, and the daemon for a second end-to-end pass over the functional
# tests (any sanitizer report makes the daemon exit non-zero: the test fails).
SAN := $(OUTPUT)/san
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
SAN_OBJS := $(patsubst userspace/%.c,$(SAN)/us/%.o,$(LIB_SRCS))
SAN_UNIT_BINS := $(patsubst tests/unit/%.c,$(SAN)/%,$(UNIT_SRCS))
# the end-to-end modules the sanitizer daemon runs (load and bench are timing-bound)
E2E_SAN ?= tests/e2e/test_capture.py tests/e2e/test_guard.py tests/e2e/test_tls.py \
	   tests/e2e/test_mysql.py tests/e2e/test_redis.py \
	   tests/e2e/test_bad_input.py tests/e2e/test_masking.py tests/e2e/test_masking_redis.py \
	   tests/e2e/test_masking_mysql.py tests/e2e/test_masking_catalog.py \
	   tests/e2e/test_masking_redis_keys.py

san-bins: $(SAN)/dbwarden $(SAN_UNIT_BINS)

unit-san: $(SAN_UNIT_BINS) $(TEST_BPF_OBJS)
	$(Q)set -e; for t in $(SAN_UNIT_BINS); do echo "== $$t"; $$t; done

e2e-san: $(SAN)/dbwarden $(TEST_HELPERS)
	$(Q)DBW_BIN=$(abspath $(SAN)/dbwarden) DBW_HELPERS=$(abspath $(OUTPUT)/tests) DBW_SANITIZED=1 \
		$(PYTHON) -m pytest -q -p no:cacheprovider $(E2E_SAN) $(PYTEST_ARGS)

$(SAN)/us/%.o: userspace/%.c $(HDRS) $(SKELS) | $(SAN)/us
	$(call msg,CC-SAN,$@)
	$(Q)$(CC) $(CFLAGS) $(SAN_FLAGS) -c $< -o $@

$(SAN)/libdbw.a: $(SAN_OBJS)
	$(call msg,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(SAN)/dbwarden: userspace/main.c $(SAN)/libdbw.a $(HDRS)
	$(call msg,BIN-SAN,$@)
	$(Q)$(CC) $(CFLAGS) $(SAN_FLAGS) $< $(SAN)/libdbw.a $(LIBS) -o $@

$(SAN)/test_%: tests/unit/test_%.c $(SAN)/libdbw.a $(HDRS) | $(SAN)
	$(call msg,TEST-SAN,$@)
	$(Q)$(CC) $(CFLAGS) $(SAN_FLAGS) -Itests/unit \
		-DDBW_TEST_BPF_DIR='"$(abspath $(OUTPUT)/tests)"' $< $(SAN)/libdbw.a $(LIBS) -lcmocka -o $@

# libFuzzer targets (tests/fuzz/fuzz_*.c), built with clang over the same sources.
FUZZ := $(OUTPUT)/fuzz
FUZZ_SECONDS ?= 60
FUZZ_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer \
	      -Wno-unknown-warning-option
FUZZ_OBJS := $(patsubst userspace/%.c,$(FUZZ)/us/%.o,$(LIB_SRCS))
FUZZ_BINS := $(patsubst tests/fuzz/%.c,$(FUZZ)/%,$(wildcard tests/fuzz/fuzz_*.c))

fuzz-bins: $(FUZZ_BINS)

fuzz: deps $(FUZZ_BINS)
	$(Q)set -e; for f in $(FUZZ_BINS); do n=$$(basename $$f); \
		mkdir -p $(FUZZ)/corpus/$$n; echo "== $$n ($(FUZZ_SECONDS) s)"; \
		$$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -rss_limit_mb=2048 \
			-artifact_prefix=$(FUZZ)/$$n- $(FUZZ)/corpus/$$n tests/fuzz/corpus/$$n \
			2>&1 | grep -E '^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb|==[0-9]+==ERROR|SUMMARY|Done)' ; \
		test $${PIPESTATUS[0]} -eq 0; done

$(FUZZ)/us/%.o: userspace/%.c $(HDRS) $(SKELS) | $(FUZZ)/us
	$(call msg,CC-FUZZ,$@)
	$(Q)$(CLANG) $(CFLAGS) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ)/fuzz_%: tests/fuzz/fuzz_%.c $(wildcard tests/fuzz/*.h) $(FUZZ_OBJS) $(HDRS) | $(FUZZ)
	$(call msg,FUZZER,$@)
	$(Q)$(CLANG) $(CFLAGS) $(FUZZ_FLAGS) -fsanitize=fuzzer $< $(FUZZ_OBJS) $(LIBS) -o $@

$(OUTPUT) $(OUTPUT)/us $(OUTPUT)/tests $(SAN) $(SAN)/us $(FUZZ) $(FUZZ)/us:
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

# OpenSSL linked in statically: the TLS discovery must find it in the executable itself
$(OUTPUT)/tests/static_tls_client: tests/helpers/static_tls_client.c | $(OUTPUT)/tests
	$(call msg,HELPER,$@)
	$(Q)$(CC) $(CFLAGS) $< -Wl,-Bstatic -lssl -lcrypto -Wl,-Bdynamic -lpthread -ldl -o $@

# A binary-protocol MySQL client (libmariadb)
$(OUTPUT)/tests/mysql_prepared: tests/helpers/mysql_prepared.c | $(OUTPUT)/tests
	$(call msg,HELPER,$@)
	$(Q)$(CC) $(CFLAGS) -I/usr/include/mariadb $< -lmariadb -o $@

$(OUTPUT)/tests/mysql_binary_read: tests/helpers/mysql_binary_read.c | $(OUTPUT)/tests
	$(call msg,HELPER,$@)
	$(Q)$(CC) $(CFLAGS) -I/usr/include/mariadb $< -lmariadb -o $@

# Small real clients and helpers the end-to-end tests drive (libpq, the
# Kafka mock cluster, ...).
$(OUTPUT)/tests/%: tests/helpers/%.c | $(OUTPUT)/tests
	$(call msg,HELPER,$@)
	$(Q)$(CC) $(CFLAGS) -I/usr/include/postgresql $< -lpq -lrdkafka -lssl -lcrypto -o $@

format:
	clang-format -i bpf/*.c bpf/*.h include/*.h userspace/*.c userspace/*.h tests/unit/*.c tests/helpers/*.c

clean:
	$(call msg,CLEAN)
	$(Q)rm -rf $(OUTPUT)
