# vmm: build, run and test the VMM on QEMU's virt board.
#
#   make run     set up the host, build the guest and the VMM, boot the system of examples/linux.toml
#                (SYSTEM=file.toml for another; Ctrl-A x quits)
#   make test    everything the tests need, then host unit tests, integration tests and a short run
#                of each fuzz target; the last line counts them: tests: N passed, N failed, N skipped
#   make install put `vmm` on PATH (PREFIX=/usr/local)
#   make bench   benchmarks: boot time, disk and network throughput, SMP scaling, exit costs, each
#                against plain QEMU
#
# With MICROKIT_SDK=/path/to/microkit-sdk the same targets build and run the Microkit platform
# (examples/microkit.toml). Everything comes from Debian's packages and this repository, except the
# Swift 6 toolchain with Embedded Swift, which must be on PATH (scripts/check-toolchain.sh says so first).
# V=1 shows the compiler command lines.

SHELL       := /bin/bash
BUILD       := build
GUEST       := $(BUILD)/guest
NATIVE      := $(BUILD)/native
TOOLBIN     := $(dir $(shell command -v swiftc))
SWIFTC      := $(TOOLBIN)swiftc
CLANG       := $(TOOLBIN)clang
QEMU        := qemu-system-aarch64
HOST_VMM    := .build/debug/vmm
# Quiet compiles: one line saying what is built; V=1 shows the commands.
Q           := $(if $(V),,@)
SWIFT_PROGRESS := awk -f scripts/progress.awk

EMBEDDED    := -target aarch64-none-none-elf -enable-experimental-feature Embedded -wmo -parse-as-library \
               -O -Xfrontend -disable-stack-protector -Xcc -ffreestanding -Xcc -mgeneral-regs-only
CFLAGS      := --target=aarch64-none-elf -ffreestanding -fno-builtin -nostdlib -O2 -mcpu=cortex-a53 \
               -mgeneral-regs-only -Wall -Werror -fno-stack-protector
CORE_SRC    := $(sort $(wildcard Sources/VMMCore/*/*.swift))
NATIVE_SRC  := $(wildcard Platforms/native/*.swift)

ifdef MICROKIT_SDK
SYSTEM      ?= examples/microkit.toml
else
SYSTEM      ?= examples/linux.toml
endif
# Systems the tests and benchmarks boot (built by `make vmm`).
TEST_SYSTEMS := examples/minimal.toml examples/linux.toml
QEMU_BOARD  := -machine virt,virtualization=on,gic-version=2 -cpu cortex-a53 -m 1G -nographic
BOOTARGS    := console=ttyAMA0 rdinit=/init

# First of all, before installing or building anything: without a Swift 6 toolchain with Embedded
# Swift nothing else is worth doing. One line says what is missing (`make clean` and `make
# uninstall` need no toolchain; recursive makes were checked by their parent).
ifeq ($(MAKELEVEL),0)
ifneq ($(filter-out clean uninstall,$(or $(MAKECMDGOALS),all)),)
TOOLCHAIN_PROBLEM := $(shell sh scripts/check-toolchain.sh 2>&1)
ifneq ($(TOOLCHAIN_PROBLEM),)
$(error $(TOOLCHAIN_PROBLEM))
endif
endif
endif

.PHONY: all setup guest host native-objects vmm check run test unit-test integration-test fuzz bench clean
all: vmm

setup:
	@bash scripts/setup-host.sh

guest: setup
	@bash scripts/build-guest.sh $(GUEST)

host:
	@echo "vmm: building the host tool $(HOST_VMM) (swift build; a first build takes a minute or two)"
	@set -o pipefail; swift build --product vmm 2>&1 | $(SWIFT_PROGRESS)

# The VMM's objects: the Embedded Swift core and the native platform. `vmm build` links them with
# a system's guest (kernel, initrd, configuration) into that system's image.
native-objects: $(NATIVE)/start.o $(NATIVE)/board.o $(NATIVE)/runtime.o $(NATIVE)/VMMCore.o $(NATIVE)/Platform.o

$(NATIVE)/VMMCore.o: $(CORE_SRC)
	@mkdir -p $(NATIVE)
	@echo "vmm: compiling the core with Embedded Swift ($@, about half a minute)"
	$(Q)$(SWIFTC) $(EMBEDDED) -module-name VMMCore -emit-module -emit-module-path $(NATIVE)/VMMCore.swiftmodule \
		-c $(CORE_SRC) -o $@
	@# swiftc leaves an unchanged object's time alone, but the platforms specialise the core's generic
	@# code themselves: they must rebuild whenever a core source changed.
	@touch $@

$(NATIVE)/Platform.o: $(NATIVE_SRC) $(NATIVE)/VMMCore.o Platforms/native/include/hardware.h
	@echo "vmm: compiling the native platform with Embedded Swift ($@)"
	$(Q)$(SWIFTC) $(EMBEDDED) -module-name NativePlatform -I $(NATIVE) -I Platforms/native/include \
		-c $(NATIVE_SRC) -o $@

$(NATIVE)/%.o: Platforms/native/%.S
	@mkdir -p $(NATIVE)
	@echo "vmm: assembling $<"
	$(Q)$(CLANG) $(CFLAGS) -c $< -o $@

$(NATIVE)/%.o: Platforms/native/%.c Platforms/native/include/hardware.h
	@mkdir -p $(NATIVE)
	@echo "vmm: compiling $<"
	$(Q)$(CLANG) $(CFLAGS) -c $< -o $@

$(NATIVE)/runtime.o: Platforms/common/runtime.c
	@mkdir -p $(NATIVE)
	@echo "vmm: compiling $<"
	$(Q)$(CLANG) $(CFLAGS) -c $< -o $@

# The images of the systems the tests boot.
vmm: guest host native-objects
	@for system in $(TEST_SYSTEMS); do echo "vmm: vmm build $$system"; $(HOST_VMM) build $$system >/dev/null || exit 1; done

check: host
	$(HOST_VMM) check $(SYSTEM)

ifdef MICROKIT_SDK
run: guest host native-objects microkit-objects
else
run: guest host native-objects
endif
	$(HOST_VMM) run $(SYSTEM) $(if $(MICROKIT_SDK),--microkit-config $(MICROKIT_CONFIG))

unit-test:
	@echo "vmm: host unit tests (swift test; builds the tests first)"
	@set -o pipefail; swift test 2>&1 | $(SWIFT_PROGRESS)

# The board matrix: every integration test runs on the default board (GICv2, Cortex-A53), then the
# native suite again on each other cell GIC:CPU (tests/integration/serial_console.py reads
# $VMM_TEST_GIC and $VMM_TEST_CPU; the test images of a GICv3 cell are built into build/gic3/).
# test_cpus, which boots each CPU model itself, runs again on the GICv3 board.
TEST_MATRIX  ?= 3:cortex-a53 2:max 3:max
MATRIX_TESTS := test_vmm_boot test_virtio test_smp test_two_vms test_device_limits test_passthrough

integration-test: vmm $(if $(MICROKIT_SDK),microkit-system-image)
	@status=0; \
	python3 -m unittest discover -s tests/integration -p 'test_*.py' -v || status=1; \
	for cell in $(TEST_MATRIX); do \
		gic=$${cell%%:*}; cpu=$${cell#*:}; extra=""; \
		echo "vmm: the native suite on GICv$$gic and -cpu $$cpu"; \
		if [ "$$gic" != 2 ]; then \
			for system in $(TEST_SYSTEMS); do \
				$(HOST_VMM) build $$system --gic $$gic --output build/gic$$gic/$$(basename $$system .toml) >/dev/null || status=1; \
			done; \
			[ "$$cpu" = cortex-a53 ] && extra=test_cpus; \
		fi; \
		PYTHONPATH=tests/integration VMM_TEST_GIC=$$gic VMM_TEST_CPU=$$cpu python3 -m unittest -v $(MATRIX_TESTS) $$extra \
			|| status=1; \
	done; \
	exit $$status

# Every stage runs even when an earlier one fails; scripts/test-summary.sh ends with the count.
test: guest
	@bash scripts/test-summary.sh build/test.log \
		"$(MAKE) --no-print-directory unit-test" \
		"$(MAKE) --no-print-directory integration-test" \
		"$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=5"

# libFuzzer on everything a guest or a blob controls: virtqueues, the virtio-mmio transport, the
# configuration blob, the boot layout, the distributor. `make test` runs each for a few seconds (so
# the harnesses keep building against the core); longer runs: make fuzz FUZZ_SECONDS=600.
FUZZ_SECONDS ?= 60
fuzz:
	@bash scripts/fuzz.sh $(FUZZ_SECONDS)

# The exit benchmark's guest: a bare-metal arm64 Image (C and assembly, no libc) that QEMU's -kernel
# and the VMM's loader both boot like Linux. ld.lld writes the raw image itself (--oformat binary);
# exits.elf is the same link as an ELF, for llvm-objdump.
EXITS       := $(BUILD)/exits
EXITS_SRC   := bench/exits/start.S bench/exits/exits.c
LD_LLD      := $(TOOLBIN)ld.lld

$(EXITS)/exits.img: $(EXITS_SRC) bench/exits/exits.ld
	@mkdir -p $(EXITS)
	@echo "vmm: building the exit benchmark's guest $@"
	$(Q)$(CLANG) $(CFLAGS) -c bench/exits/start.S -o $(EXITS)/start.o
	$(Q)$(CLANG) $(CFLAGS) -c bench/exits/exits.c -o $(EXITS)/exits.o
	$(Q)$(LD_LLD) -T bench/exits/exits.ld -o $(EXITS)/exits.elf $(EXITS)/start.o $(EXITS)/exits.o
	$(Q)$(LD_LLD) -T bench/exits/exits.ld --oformat binary -o $@ $(EXITS)/start.o $(EXITS)/exits.o

# Boot time: the guest on bare QEMU with the same board flags (Linux then owns EL2), on bare QEMU at
# EL1 (virtualization=off: what Linux sees under a VMM), and under our VMM; ratios against the first.
# The same on a GICv3 board in the same run: bare QEMU with gic-version=3 and the VMM built with
# --gic 3 (build/gic3/minimal, as integration-test builds it), with vmm-gic3/qemu-gic3 and
# vmm-gic3/vmm below the table.
# Then disk and network throughput against the guest driving QEMU's devices itself.
# With MICROKIT_SDK also the guest on seL4 (config MICROKIT_CONFIG): its boot to the prompt (the image
# of examples/microkit.toml, as the SDK runs it) in the same table, target <= 1.30 of plain QEMU; its
# disk and network throughput (an image bench-io.py builds with `vmm build`) against the same guest on
# the native platform, targets >= 0.50. Last, SMP scaling: a CPU-bound job in 1, 2 and 4 pinned copies
# on a 4-vCPU guest, under the VMM against plain QEMU with -smp 4, target >= 0.90 at each width.
# Two VMs (examples/microkit-two-vms.toml, on the native platform and with MICROKIT_SDK on seL4): TCP
# between them vs one VM to the host (native, >= 1.00), boot vs 1 VM, and seL4 against native.
# Exit costs: the bare-metal guest of bench/exits/ times MMIO, PSCI, virtio, timer and IPI round
# trips on plain QEMU and under the VMM, on a GICv2 and a GICv3 board (target <= 2000 ns per GICD
# read and PSCI call).
BENCH_RUNS ?= 7
QEMU_BOARD_GIC3 := $(subst gic-version=2,gic-version=3,$(QEMU_BOARD))
BENCH_SEL4 = --name sel4 -- $(QEMU) $(subst -m 1G,-m size=2G,$(QEMU_BOARD)) -serial mon:stdio \
             -device loader,file=$(VMM_MICROKIT_IMAGE),addr=0x70000000,cpu-num=0
bench: vmm $(EXITS)/exits.img $(if $(MICROKIT_SDK),microkit-system-image)
	@echo "vmm: vmm build examples/minimal.toml --gic 3"
	$(Q)$(HOST_VMM) build examples/minimal.toml --gic 3 --output $(BUILD)/gic3/minimal >/dev/null
	python3 scripts/bench-boot.py --runs $(BENCH_RUNS) $(if $(MICROKIT_SDK),--target sel4=1.30) \
		--ratio vmm-gic3/qemu-gic3 --ratio vmm-gic3/vmm \
		--name qemu -- $(QEMU) $(QEMU_BOARD) -kernel $(GUEST)/Image -initrd $(GUEST)/initramfs.cpio.gz -append "$(BOOTARGS)" \
		--name qemu-el1 -- $(QEMU) $(subst virtualization=on,virtualization=off,$(QEMU_BOARD)) -kernel $(GUEST)/Image -initrd $(GUEST)/initramfs.cpio.gz -append "$(BOOTARGS)" \
		--name vmm -- $(QEMU) $(QEMU_BOARD) -kernel $(BUILD)/minimal/vmm.elf \
		--name qemu-gic3 -- $(QEMU) $(QEMU_BOARD_GIC3) -kernel $(GUEST)/Image -initrd $(GUEST)/initramfs.cpio.gz -append "$(BOOTARGS)" \
		--name vmm-gic3 -- $(QEMU) $(QEMU_BOARD_GIC3) -kernel $(BUILD)/gic3/minimal/vmm.elf $(if $(MICROKIT_SDK),$(BENCH_SEL4))
	python3 scripts/bench-io.py $(if $(MICROKIT_SDK),--sel4 --microkit-config $(MICROKIT_CONFIG))
	python3 scripts/bench-smp.py
	python3 scripts/bench-vms.py
	python3 scripts/bench-exits.py

clean:
	rm -rf $(BUILD)

# --------------------------------------------------------------------------------------------
# The Microkit platform: the same core as a protection domain, built against the user's SDK.
#   make MICROKIT_SDK=/path/to/microkit-sdk-2.0.1 [BOARD=qemu_virt_aarch64] [MICROKIT_CONFIG=debug] run
MICROKIT_BOARD  ?= $(if $(BOARD),$(BOARD),qemu_virt_aarch64)
MICROKIT_CONFIG ?= debug
MK              := $(BUILD)/microkit/$(MICROKIT_BOARD)/$(MICROKIT_CONFIG)
MK_BOARD_DIR    := $(MICROKIT_SDK)/board/$(MICROKIT_BOARD)/$(MICROKIT_CONFIG)
MK_SRC          := $(wildcard Platforms/microkit/*.swift)
MK_DRIVER_SRC   := $(wildcard Platforms/microkit/driver/*.swift)
MK_CFLAGS       := $(CFLAGS) -Wno-unused-function -I$(MK_BOARD_DIR)/include
export VMM_MICROKIT_IMAGE := $(abspath $(BUILD))/microkit-test/loader.img
.PHONY: microkit microkit-objects microkit-system-image microkit-sdk-check

microkit-sdk-check:
	@if [ -z "$(MICROKIT_SDK)" ]; then \
	  echo "vmm: the Microkit platform needs a Microkit SDK: make MICROKIT_SDK=/path/to/microkit-sdk-2.0.1 run"; \
	  echo "     SDKs come from the seL4 Microkit releases (github.com/seL4/microkit) or are built from its"; \
	  echo "     source with build_sdk.py; they are not in Debian or PyPI. Without one, 'make run' boots the"; \
	  echo "     native platform."; exit 2; fi
	@if [ ! -f "$(MK_BOARD_DIR)/include/microkit.h" ]; then \
	  echo "vmm: MICROKIT_SDK='$(MICROKIT_SDK)' has no board '$(MICROKIT_BOARD)' in config '$(MICROKIT_CONFIG)'"; \
	  echo "     (expected $(MK_BOARD_DIR)/include/microkit.h)"; exit 2; fi

microkit-objects: microkit-sdk-check $(NATIVE)/VMMCore.o
	@$(MAKE) --no-print-directory $(MK)/entry.o $(MK)/runtime.o $(MK)/Platform.o $(MK)/driver_entry.o \
		$(MK)/DriverPlatform.o

microkit: microkit-objects

$(MK)/Platform.o: $(MK_SRC) $(NATIVE)/VMMCore.o Platforms/microkit/include/microkit_bridge.h
	@mkdir -p $(MK)
	@echo "vmm: compiling the Microkit platform with Embedded Swift ($@)"
	$(Q)$(SWIFTC) $(EMBEDDED) -module-name MicrokitPlatform -I $(NATIVE) -I Platforms/microkit/include \
		-Xcc -I$(MK_BOARD_DIR)/include -c $(MK_SRC) -o $@

# The driver protection domains' program: `vmm build` links it once per driver PD.
$(MK)/DriverPlatform.o: $(MK_DRIVER_SRC) $(NATIVE)/VMMCore.o Platforms/microkit/include/microkit_bridge.h
	@mkdir -p $(MK)
	@echo "vmm: compiling the Microkit driver PDs with Embedded Swift ($@)"
	$(Q)$(SWIFTC) $(EMBEDDED) -module-name DriverPlatform -I $(NATIVE) -I Platforms/microkit/include \
		-Xcc -I$(MK_BOARD_DIR)/include -c $(MK_DRIVER_SRC) -o $@

$(MK)/driver_entry.o: Platforms/microkit/driver/driver_entry.c Platforms/microkit/include/microkit_bridge.h
	@mkdir -p $(MK)
	@echo "vmm: compiling $< for the Microkit platform"
	$(Q)$(CLANG) $(MK_CFLAGS) -c $< -o $@

$(MK)/entry.o: Platforms/microkit/entry.c Platforms/microkit/include/microkit_bridge.h
	@mkdir -p $(MK)
	@echo "vmm: compiling $< for the Microkit platform"
	$(Q)$(CLANG) $(MK_CFLAGS) -c $< -o $@

$(MK)/runtime.o: Platforms/common/runtime.c
	@mkdir -p $(MK)
	@echo "vmm: compiling $< for the Microkit platform"
	$(Q)$(CLANG) $(CFLAGS) -c $< -o $@

# The image the Microkit integration tests boot.
microkit-system-image: guest host microkit-objects
	@echo "vmm: vmm build examples/microkit.toml (the Microkit test image)"
	$(Q)$(HOST_VMM) build examples/microkit.toml --output $(BUILD)/microkit-test --microkit-config $(MICROKIT_CONFIG) >/dev/null

# --------------------------------------------------------------------------------------------
# make install [PREFIX=/usr/local]: `vmm` on PATH, usable from any directory. PREFIX/bin/vmm is a
# symbolic link to this checkout's tool, which finds the VMM's objects here through its own path
# (or $VMM_HOME); a later `make host` or `swift build` updates what the link runs. The checkout must
# stay where it is; `make uninstall` removes the link.
PREFIX ?= /usr/local
.PHONY: install uninstall

install: host native-objects
	@mkdir -p $(DESTDIR)$(PREFIX)/bin
	@ln -sfn $(CURDIR)/$(HOST_VMM) $(DESTDIR)$(PREFIX)/bin/vmm
	@echo "vmm: installed $(DESTDIR)$(PREFIX)/bin/vmm -> $(CURDIR)/$(HOST_VMM)"

uninstall:
	@if [ -L $(DESTDIR)$(PREFIX)/bin/vmm ]; then rm $(DESTDIR)$(PREFIX)/bin/vmm; echo "vmm: removed $(DESTDIR)$(PREFIX)/bin/vmm"; fi
