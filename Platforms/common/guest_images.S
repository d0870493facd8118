// What the VMM carries for its guest: the kernel, the initramfs and the guest configuration
// (GuestConfiguration's encoding, made by `vmm build` from the system file), linked into the VMM's
// image so that one file boots. Paths come from the build (-DGUEST_KERNEL=… -DGUEST_INITRD=…
// -DGUEST_CONFIG=…).
    .section .guest_images, "a"
    .balign 4096
    .global guest_kernel_start, guest_kernel_end, guest_initrd_start, guest_initrd_end
    .global guest_config_start, guest_config_end
guest_kernel_start:
    .incbin GUEST_KERNEL
guest_kernel_end:
    .balign 4096
guest_initrd_start:
    .incbin GUEST_INITRD
guest_initrd_end:
    .balign 16
guest_config_start:
    .incbin GUEST_CONFIG
guest_config_end:
