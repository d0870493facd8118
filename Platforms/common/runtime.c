// The few C-library functions Embedded Swift expects from a freestanding platform, shared by the
// native and Microkit platforms: memory primitives and an allocator over the platform's heap
// (platform_heap). Out of memory stops the VMM through platform_fatal, which reports on the
// platform's console.
#include <stddef.h>
#include <stdint.h>

/// [start, end) of the memory the allocator may hand out.
void platform_heap(uintptr_t *start, uintptr_t *end);
/// Prints `message` on the platform's console and never returns.
_Noreturn void platform_fatal(const char *message);
/// A few bits that differ from run to run, to seed hashing (the counter's low bits suffice).
uint64_t platform_entropy(void);

void *memcpy(void *dst, const void *src, size_t n) {
    uint8_t *d = dst; const uint8_t *s = src;
    // Large aligned copies (the guest's kernel, 27 MB) move 64 bytes an iteration: under QEMU's
    // emulation the cost is per instruction, so wide loads and stores make boot measurably faster.
    if ((((uintptr_t)d | (uintptr_t)s) & 15) == 0) {
        size_t blocks = n / 64;
        for (size_t i = 0; i < blocks; i++) {
            __uint128_t a = ((const __uint128_t *)s)[4 * i], b = ((const __uint128_t *)s)[4 * i + 1];
            __uint128_t c = ((const __uint128_t *)s)[4 * i + 2], e = ((const __uint128_t *)s)[4 * i + 3];
            ((__uint128_t *)d)[4 * i] = a; ((__uint128_t *)d)[4 * i + 1] = b;
            ((__uint128_t *)d)[4 * i + 2] = c; ((__uint128_t *)d)[4 * i + 3] = e;
        }
        d += blocks * 64; s += blocks * 64; n -= blocks * 64;
    }
    if ((((uintptr_t)d | (uintptr_t)s | n) & 7) == 0) {
        for (size_t i = 0; i < n; i += 8) *(uint64_t *)(d + i) = *(const uint64_t *)(s + i);
        return dst;
    }
    for (size_t i = 0; i < n; i++) d[i] = s[i];
    return dst;
}

void *memmove(void *dst, const void *src, size_t n) {
    uint8_t *d = dst; const uint8_t *s = src;
    if (d == s || n == 0) return dst;
    if (d < s || d >= s + n) return memcpy(dst, src, n);
    for (size_t i = n; i > 0; i--) d[i - 1] = s[i - 1];
    return dst;
}

void *memset(void *dst, int c, size_t n) {
    uint8_t *d = dst;
    if (c == 0 && (((uintptr_t)d | n) & 7) == 0) {
        for (size_t i = 0; i < n; i += 8) *(uint64_t *)(d + i) = 0;
        return dst;
    }
    for (size_t i = 0; i < n; i++) d[i] = (uint8_t)c;
    return dst;
}

int memcmp(const void *a, const void *b, size_t n) {
    const uint8_t *x = a, *y = b;
    for (size_t i = 0; i < n; i++) if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
    return 0;
}

size_t strlen(const char *s) { size_t n = 0; while (s[n]) n++; return n; }

// The allocator. Steady-state work (a descriptor chain's buffer list per request, say) allocates
// and frees blocks of a few sizes over and over, so freed blocks are kept on per-size free lists:
// requests up to 32 KiB with alignment up to 16 are rounded up to a power of two and recycled.
// Larger or more aligned blocks (page tables, DMA areas, set up once) come from the bump pointer
// and are never reused. Every block carries a 16-byte header naming its size class.
#define SIZE_CLASSES 12                 /* 16 B .. 32 KiB */
#define NOT_RECYCLED 0xffu
#define HEADER 16u

static uintptr_t heap_next, heap_end;
static void *free_lists[SIZE_CLASSES];

// Several CPUs allocate on the native platform (one per vCPU): the free lists and the bump pointer
// are guarded by one spinlock, held only inside posix_memalign and free.
static uint32_t heap_lock;
static void lock_heap(void) {
    while (__atomic_exchange_n(&heap_lock, 1, __ATOMIC_ACQUIRE)) {
        while (__atomic_load_n(&heap_lock, __ATOMIC_RELAXED)) {}
    }
}
static void unlock_heap(void) { __atomic_store_n(&heap_lock, 0, __ATOMIC_RELEASE); }

static uintptr_t bump(size_t size, size_t alignment) {
    if (heap_next == 0) platform_heap(&heap_next, &heap_end);
    uintptr_t p = (heap_next + HEADER + alignment - 1) & ~(uintptr_t)(alignment - 1);
    if (p < heap_next || p + size < p || p + size > heap_end) platform_fatal("vmm: out of heap memory\n");
    heap_next = p + size;
    return p;
}

int posix_memalign(void **out, size_t alignment, size_t size) {
    if (alignment < HEADER) alignment = HEADER;
    if (size == 0) size = 1;
    unsigned size_class = 0;
    while (size_class < SIZE_CLASSES && ((size_t)16 << size_class) < size) size_class++;
    uintptr_t p;
    lock_heap();
    if (alignment == HEADER && size_class < SIZE_CLASSES) {
        if (free_lists[size_class]) {
            p = (uintptr_t)free_lists[size_class];
            free_lists[size_class] = *(void **)p;
        } else {
            p = bump((size_t)16 << size_class, HEADER);
        }
    } else {
        size_class = NOT_RECYCLED;
        p = bump(size, alignment);
    }
    unlock_heap();
    *(uint32_t *)(p - HEADER) = size_class;
    *out = (void *)p;
    return 0;
}

void free(void *block) {
    if (block == 0) return;
    uint32_t size_class = *(uint32_t *)((uintptr_t)block - HEADER);
    if (size_class >= SIZE_CLASSES) return;
    lock_heap();
    *(void **)block = free_lists[size_class];
    free_lists[size_class] = block;
    unlock_heap();
}

void arc4random_buf(void *buf, size_t n) {
    uint64_t x = platform_entropy() | 1;
    uint8_t *b = buf;
    for (size_t i = 0; i < n; i++) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; b[i] = (uint8_t)x; }
}
