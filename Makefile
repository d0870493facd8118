# vmm: build, run and test the VMM on QEMU's virt board (native EL2 platform).
#
#   make run     set up the host, build the guest and the VMM, boot Linux to a shell (Ctrl-A x quits)
#   make test    everything the tests need, then host unit tests and integration tests
#   make bench   boot-time benchmark: the guest under the VMM against the same guest on bare QEMU
#
# Everything comes from Debian's packages and this repository; see README.md.

SHELL       := /bin/bash
BUILD       := build
GUEST       := $(BUILD)/guest
NATIVE      := $(BUILD)/native
TOOLBIN     := $(dir $(shell command -v swiftc))
SWIFTC      := $(TOOLBIN)swiftc
CLANG       := $(TOOLBIN)clang
LLD         := $(TOOLBIN)ld.lld
QEMU        := qemu-system-aarch64

EMBEDDED    := -target aarch64-none-none-elf -enable-experimental-feature Embedded -wmo -parse-as-library \
               -Osize -Xfrontend -disable-stack-protector -Xcc -ffreestanding
CFLAGS      := --target=aarch64-none-elf -ffreestanding -fno-builtin -nostdlib -O2 -mcpu=cortex-a53 \
               -Wall -Werror -fno-stack-protector
CORE_SRC    := $(wildcard Sources/VMMCore/*.swift)
NATIVE_SRC  := $(wildcard Platforms/native/*.swift)

QEMU_BOARD  := -machine virt,virtualization=on,gic-version=2 -cpu cortex-a53 -m 1G -nographic
# The board's own virtio devices, which the VMM drives to back the guest's: a disk image file, user
# networking with a port forward to the guest's port 80, and a console port on a unix socket.
DISK        ?= $(BUILD)/disk.img
DISK_SIZE   ?= 256M
NET_PORT    ?= 8080
GUEST_MAC   ?= 52:54:00:12:34:56
CONSOLE_SOCKET ?= $(BUILD)/hvc0.sock
QEMU_DEVICES = -global virtio-mmio.force-legacy=false \
               -drive file=$(DISK),if=none,format=raw,id=disk0 -device virtio-blk-device,drive=disk0 \
               -netdev user,id=net0,hostfwd=tcp:127.0.0.1:$(NET_PORT)-:80 -device virtio-net-device,netdev=net0,mac=$(GUEST_MAC) \
               -chardev socket,id=console1,path=$(CONSOLE_SOCKET),server=on,wait=off \
               -device virtio-serial-device -device virtconsole,chardev=console1
VMM_ELF     := $(NATIVE)/vmm.elf
HOST_VMM    := .build/debug/vmm
GUEST_RAM_MIB := 512
# The guest the VMM carries; override to boot your own: make run KERNEL=path/Image INITRD=path/initrd
KERNEL      ?= $(GUEST)/Image
INITRD      ?= $(GUEST)/initramfs.cpio.gz
# The guest's kernel command line (also in Platforms/native/NativeMain.swift).
BOOTARGS    := console=ttyAMA0 rdinit=/init

.PHONY: all setup guest vmm host check-images run test unit-test integration-test bench clean FORCE
all: vmm

setup:
	@bash scripts/setup-host.sh

guest: setup
	@bash scripts/build-guest.sh $(GUEST)

host:
	swift build --product vmm

# The VMM core as an Embedded Swift module for bare-metal AArch64.
$(NATIVE)/VMMCore.o: $(CORE_SRC)
	@mkdir -p $(NATIVE)
	$(SWIFTC) $(EMBEDDED) -module-name VMMCore -emit-module -emit-module-path $(NATIVE)/VMMCore.swiftmodule \
		-c $(CORE_SRC) -o $@

$(NATIVE)/Platform.o: $(NATIVE_SRC) $(NATIVE)/VMMCore.o Platforms/native/include/hardware.h
	$(SWIFTC) $(EMBEDDED) -module-name NativePlatform -I $(NATIVE) -I Platforms/native/include \
		-c $(NATIVE_SRC) -o $@

$(NATIVE)/%.o: Platforms/native/%.S
	@mkdir -p $(NATIVE)
	$(CLANG) $(CFLAGS) -c $< -o $@

$(NATIVE)/%.o: Platforms/native/%.c Platforms/native/include/hardware.h
	@mkdir -p $(NATIVE)
	$(CLANG) $(CFLAGS) -c $< -o $@

$(NATIVE)/runtime.o: Platforms/common/runtime.c
	@mkdir -p $(NATIVE)
	$(CLANG) $(CFLAGS) -c $< -o $@

# Always re-assembled (about a second): the images' paths may change between builds.
$(NATIVE)/guest_images.o: Platforms/common/guest_images.S FORCE
	@mkdir -p $(NATIVE)
	$(CLANG) $(CFLAGS) -DGUEST_KERNEL='"$(abspath $(KERNEL))"' -DGUEST_INITRD='"$(abspath $(INITRD))"' -c $< -o $@

$(VMM_ELF): $(NATIVE)/start.o $(NATIVE)/board.o $(NATIVE)/runtime.o $(NATIVE)/VMMCore.o $(NATIVE)/Platform.o $(NATIVE)/guest_images.o Platforms/native/linker.ld
	$(LLD) -T Platforms/native/linker.ld --gc-sections -o $@ $(filter %.o,$^)

# Checks the guest images before anything is built from them or QEMU starts: one clear message
# naming the bad file, and a non-zero exit.
check-images: host
	@$(HOST_VMM) check-boot --kernel $(KERNEL) --initrd $(INITRD) --ram-size-mib $(GUEST_RAM_MIB) >/dev/null

vmm: guest
	@$(MAKE) --no-print-directory check-images
	@$(MAKE) --no-print-directory $(VMM_ELF)

ifdef MICROKIT_SDK
run: microkit-run
else
run: vmm $(DISK)
	@echo "vmm: starting QEMU; quit with Ctrl-A then x. Disk: $(DISK); guest port 80 at 127.0.0.1:$(NET_PORT); hvc0 on $(CONSOLE_SOCKET)"
	$(QEMU) $(QEMU_BOARD) $(QEMU_DEVICES) -kernel $(VMM_ELF)

# A blank raw disk for the guest's /dev/vda, made once; the guest's writes stay in it.
$(DISK):
	@mkdir -p $(dir $@)
	truncate -s $(DISK_SIZE) $@
endif

unit-test:
	swift test

integration-test: vmm $(if $(MICROKIT_SDK),microkit)
	python3 -m unittest discover -s tests/integration -p 'test_*.py' -v

test: guest
	@$(MAKE) --no-print-directory unit-test
	@$(MAKE) --no-print-directory integration-test

# Three configurations, interleaved: the guest on bare QEMU with the same board flags (Linux then
# owns EL2), the guest on bare QEMU at EL1 (virtualization=off: what Linux sees under a VMM), and
# the guest under our VMM. Ratios are against the first.
BENCH_RUNS ?= 7
bench: vmm
	python3 scripts/bench-boot.py --runs $(BENCH_RUNS) \
		--name qemu -- $(QEMU) $(QEMU_BOARD) -kernel $(KERNEL) -initrd $(INITRD) -append "$(BOOTARGS)" \
		--name qemu-el1 -- $(QEMU) $(subst virtualization=on,virtualization=off,$(QEMU_BOARD)) -kernel $(KERNEL) -initrd $(INITRD) -append "$(BOOTARGS)" \
		--name vmm -- $(QEMU) $(QEMU_BOARD) -kernel $(VMM_ELF)

clean:
	rm -rf $(BUILD)

# --------------------------------------------------------------------------------------------
# The Microkit platform: the same core as a protection domain, built against the user's SDK.
#   make MICROKIT_SDK=/path/to/microkit-sdk-2.0.1 [BOARD=qemu_virt_aarch64] [MICROKIT_CONFIG=debug] run
MICROKIT_BOARD  ?= $(if $(BOARD),$(BOARD),qemu_virt_aarch64)
MICROKIT_CONFIG ?= debug
MK              := $(BUILD)/microkit/$(MICROKIT_BOARD)/$(MICROKIT_CONFIG)
export VMM_MICROKIT_IMAGE := $(abspath $(MK))/loader.img
MK_BOARD_DIR    := $(MICROKIT_SDK)/board/$(MICROKIT_BOARD)/$(MICROKIT_CONFIG)
MK_SRC          := $(wildcard Platforms/microkit/*.swift)
MK_CFLAGS       := $(CFLAGS) -Wno-unused-function -I$(MK_BOARD_DIR)/include
MK_QEMU         := -machine virt,virtualization=on,gic-version=2 -cpu cortex-a53 -m size=2G -nographic -serial mon:stdio
.PHONY: microkit microkit-run microkit-sdk-check

microkit-sdk-check:
	@if [ -z "$(MICROKIT_SDK)" ]; then \
	  echo "vmm: the Microkit platform needs a Microkit SDK: make MICROKIT_SDK=/path/to/microkit-sdk-2.0.1 run"; \
	  echo "     SDKs come from the seL4 Microkit releases (github.com/seL4/microkit) or are built from its"; \
	  echo "     source with build_sdk.py; they are not in Debian or PyPI. Without one, 'make run' boots the"; \
	  echo "     native platform."; exit 2; fi
	@if [ ! -f "$(MK_BOARD_DIR)/include/microkit.h" ]; then \
	  echo "vmm: MICROKIT_SDK='$(MICROKIT_SDK)' has no board '$(MICROKIT_BOARD)' in config '$(MICROKIT_CONFIG)'"; \
	  echo "     (expected $(MK_BOARD_DIR)/include/microkit.h)"; exit 2; fi

$(MK)/Platform.o: $(MK_SRC) $(NATIVE)/VMMCore.o Platforms/microkit/include/microkit_bridge.h
	@mkdir -p $(MK)
	$(SWIFTC) $(EMBEDDED) -module-name MicrokitPlatform -I $(NATIVE) -I Platforms/microkit/include \
		-Xcc -I$(MK_BOARD_DIR)/include -c $(MK_SRC) -o $@

$(MK)/entry.o: Platforms/microkit/entry.c Platforms/microkit/include/microkit_bridge.h
	@mkdir -p $(MK)
	$(CLANG) $(MK_CFLAGS) -c $< -o $@

$(MK)/runtime.o: Platforms/common/runtime.c
	@mkdir -p $(MK)
	$(CLANG) $(CFLAGS) -c $< -o $@

$(MK)/vmm.elf: $(MK)/entry.o $(MK)/runtime.o $(NATIVE)/VMMCore.o $(MK)/Platform.o $(NATIVE)/guest_images.o Platforms/microkit/vmm.ld
	$(LLD) -L$(MK_BOARD_DIR)/lib -T Platforms/microkit/vmm.ld --gc-sections -o $@ $(filter %.o,$^) -lmicrokit

$(MK)/vmm.system: $(MK)/vmm.elf FORCE
	$(HOST_VMM) microkit-system --vmm-elf vmm.elf --output $@

$(MK)/loader.img: $(MK)/vmm.system $(MK)/vmm.elf
	$(MICROKIT_SDK)/bin/microkit $(MK)/vmm.system --search-path $(MK) --board $(MICROKIT_BOARD) \
		--config $(MICROKIT_CONFIG) -o $@ -r $(MK)/report.txt

microkit: microkit-sdk-check guest host
	@$(MAKE) --no-print-directory check-images
	@$(MAKE) --no-print-directory $(NATIVE)/VMMCore.o $(NATIVE)/guest_images.o
	@$(MAKE) --no-print-directory $(MK)/loader.img

microkit-run: microkit
	@echo "vmm: starting QEMU with the Microkit system; quit with Ctrl-A then x"
	$(QEMU) $(MK_QEMU) -device loader,file=$(MK)/loader.img,addr=0x70000000,cpu-num=0
