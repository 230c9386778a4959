# vmctl — one Makefile for everything. See README.md for the two commands a user runs.
#
#   make            build everything into build/ (release, -O2)
#   make asan       the same with AddressSanitizer + UBSan into build-asan/ (what tests use)
#   make check-unit cmocka unit tests (ASan build)
#   make test       deps check, unit tests, tiny-guest tests, real-guest tests (in the test host
#                   where /dev/kvm is emulation-only)
#   make demo       the main job
#   make bench      benchmarks (not tests), results under build/bench/
#
# Sources are discovered by folder so adding a file needs no Makefile edit:
#   - every .c under vmm/ migrate/ net/ storage/ (but not a *main.c) goes into libvmm.a;
#   - every cli/<tool>.c or vmm/main.c is a program linking libvmm.a;
#   - every tests/unit/test_<name>.c is a cmocka program; extra link flags for one test go in
#     test_<name>_LDFLAGS (for --wrap mocks).

CC      ?= gcc
O       ?= build
WERROR  ?= 1
CFLAGS_BASE := -std=gnu11 -D_GNU_SOURCE -g -Wall -Wextra -Wformat=2 -Wmissing-prototypes \
	-Wstrict-prototypes -Wundef -Wshadow -Wwrite-strings -Wno-unused-parameter -I. \
	$(shell pkg-config --cflags libnl-route-3.0 2>/dev/null || echo -I/usr/include/libnl3)
ifeq ($(WERROR),1)
CFLAGS_BASE += -Werror
endif
ifeq ($(SANITIZE),1)
CFLAGS_OPT := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDFLAGS_SAN := -fsanitize=address,undefined
else
CFLAGS_OPT := -O2
LDFLAGS_SAN :=
endif
CFLAGS  := $(CFLAGS_BASE) $(CFLAGS_OPT) $(EXTRA_CFLAGS)
LIBS    := -luring -ljson-c -lzstd -lnl-route-3 -lnl-3 -lnftnl -lmnl -lpthread

LIB_SRCS  := $(filter-out %main.c,$(shell find vmm migrate net storage -name '*.c' 2>/dev/null | sort))
LIB_OBJS  := $(LIB_SRCS:%.c=$(O)/obj/%.o)
PROGS     := $(O)/bin/vmm $(patsubst cli/%.c,$(O)/bin/%,$(wildcard cli/*.c))
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(O)/tests/%)

.PHONY: all asan check-unit test demo bench deps clean guest lab
all: $(O)/libvmm.a $(PROGS) $(UNIT_BINS)

$(O)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(O)/libvmm.a: $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(O)/bin/vmm: $(O)/obj/vmm/main.o $(O)/libvmm.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_SAN) -o $@ $^ $(LIBS)

$(O)/bin/%: $(O)/obj/cli/%.o $(O)/libvmm.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_SAN) -o $@ $^ $(LIBS)

$(O)/tests/%: $(O)/obj/tests/unit/%.o $(O)/libvmm.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_SAN) -o $@ $< $(O)/libvmm.a $($*_LDFLAGS) -lcmocka $(LIBS)

asan:
	$(MAKE) O=build-asan SANITIZE=1 all

check-unit: asan
	@fail=0; for t in $(UNIT_BINS:$(O)/%=build-asan/%); do \
		echo "== $$t"; $$t || fail=1; done; exit $$fail

-include $(shell find $(O) build-asan -name '*.d' 2>/dev/null)

clean:
	rm -rf build build-asan
test_msix_LDFLAGS := -Wl,--wrap=kvm_ioctl
test_virtio_pci_LDFLAGS := -Wl,--wrap=kvm_ioctl
test_vcpu_exit_LDFLAGS := -Wl,--wrap=kvm_ioctl
test_dirty_LDFLAGS := -Wl,--wrap=kvm_ioctl
test_virtio_net_LDFLAGS := -Wl,--wrap=kvm_ioctl
test_virtio_blk_LDFLAGS := -Wl,--wrap=kvm_ioctl
test_virtio_balloon_LDFLAGS := -Wl,--wrap=kvm_ioctl

# ---- test guest, test host, tests, demo, benchmarks (see docs/testing.md) ----
deps:
	scripts/install-deps.sh

guest:
	firmware/guest/build.sh

# the test host's boot files and the int3 probe (a tiny KVM program used by the tests)
lab: guest build/lab/probe-int3
	tests/lab/build.sh

build/lab/probe-int3: tests/lab/probe-int3.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -O2 -Wall -Wextra -Werror -o $@ $<

test:
	tests/run-all.sh

demo: all guest lab
	scripts/demo.sh

bench: all guest lab
	bench/boot-qemu.sh
