// The guest's kernel and initramfs, carried inside the VMM's ELF so that QEMU's -kernel loads
// everything. Paths come from the build (-DGUEST_KERNEL=... -DGUEST_INITRD=...).
    .section .guest_images, "a"
    .balign 4096
    .global guest_kernel_start, guest_kernel_end, guest_initrd_start, guest_initrd_end
guest_kernel_start:
    .incbin GUEST_KERNEL
guest_kernel_end:
    .balign 4096
guest_initrd_start:
    .incbin GUEST_INITRD
guest_initrd_end:
