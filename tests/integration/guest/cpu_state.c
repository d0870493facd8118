// A guest user program that holds CPU state in registers while the VMM takes exits under it, then
// checks that state is still there. Built by tests/integration/test_cpus.py with the toolchain's
// clang as a static aarch64 Linux executable with no C library (raw system calls), and run inside
// the guest. Between setting the registers and checking them it makes no system call (Linux may
// discard SVE state at one) and only spins, reading the virtual counter, so every timer tick and
// every interrupt is an exit to the VMM at EL2 while the state is live in the hardware.
//
//   cpu_state sve SECONDS   z0-z31 and p0-p15 filled with a pattern, held SECONDS, compared;
//                           prints "sve ok vl=<bytes> exits-window=<s>" or "sve corrupt ...".
//   cpu_state pac SECONDS   a pointer signed with the APIA key (PACIA), signed again after SECONDS:
//                           the two must match (the key survived), and AUTIA must give the pointer
//                           back; prints "pac ok" or "pac changed ...".
#include <stdint.h>

static long sys_write(int fd, const void *buffer, unsigned long length) {
    register long x0 __asm__("x0") = fd;
    register long x1 __asm__("x1") = (long)buffer;
    register long x2 __asm__("x2") = (long)length;
    register long x8 __asm__("x8") = 64;
    __asm__ volatile("svc #0" : "+r"(x0) : "r"(x1), "r"(x2), "r"(x8) : "memory");
    return x0;
}

static void sys_exit(int status) {
    register long x0 __asm__("x0") = status;
    register long x8 __asm__("x8") = 93;
    __asm__ volatile("svc #0" :: "r"(x0), "r"(x8) : "memory");
    for (;;) {}
}

static unsigned long length_of(const char *text) {
    unsigned long n = 0;
    while (text[n]) n++;
    return n;
}

// Output is kept until a line ends and written with one system call, so that the lines of several
// copies running at once do not interleave.
static char line[256];
static unsigned long line_length;

static void print(const char *text) {
    for (unsigned long n = 0; n < length_of(text); n++) {
        if (line_length < sizeof line) line[line_length++] = text[n];
        if (text[n] == '\n') { sys_write(1, line, line_length); line_length = 0; }
    }
}

static void print_number(uint64_t value) {
    char digits[24];
    int n = sizeof digits;
    digits[--n] = 0;
    do { digits[--n] = (char)('0' + value % 10); value /= 10; } while (value && n > 0);
    print(digits + n);
}

static int equal(const char *a, const char *b) {
    while (*a && *a == *b) { a++; b++; }
    return *a == *b;
}

static uint64_t counter(void) { uint64_t v; __asm__ volatile("isb\n mrs %0, cntvct_el0" : "=r"(v)); return v; }
static uint64_t frequency(void) { uint64_t v; __asm__ volatile("mrs %0, cntfrq_el0" : "=r"(v)); return v; }

// Spins for `seconds` without a system call.
static void hold(uint64_t seconds) {
    uint64_t end = counter() + seconds * frequency();
    while (counter() < end) {}
}

// 32 Z registers of up to 256 bytes (SVE's largest vector) and 16 P registers of up to 32 bytes.
static uint8_t z_saved[32 * 256], p_saved[16 * 32];

__attribute__((target("sve")))
static uint64_t vector_bytes(void) { uint64_t v; __asm__ volatile("rdvl %0, #1" : "=r"(v)); return v; }

// z<n> byte i holds n + 3i for n < 16 and (n - 16) + 5i above (INDEX takes a start in -16...15).
#define FILL_Z(n) "index z" #n ".b, #" #n ", #3\n"
#define FILL_ZH(n, start) "index z" #n ".b, #" #start ", #5\n"
#define FILL_P(n, pattern) "ptrue p" #n ".b, " #pattern "\n"
#define STORE_Z(n) "str z" #n ", [%0, #" #n ", mul vl]\n"
#define STORE_P(n) "str p" #n ", [%1, #" #n ", mul vl]\n"

__attribute__((target("sve"), noinline))
static void sve_fill_hold_store(uint64_t seconds) {
    uint64_t end = counter() + seconds * frequency();
    __asm__ volatile(
        FILL_Z(0) FILL_Z(1) FILL_Z(2) FILL_Z(3) FILL_Z(4) FILL_Z(5) FILL_Z(6) FILL_Z(7)
        FILL_Z(8) FILL_Z(9) FILL_Z(10) FILL_Z(11) FILL_Z(12) FILL_Z(13) FILL_Z(14) FILL_Z(15)
        FILL_ZH(16, 0) FILL_ZH(17, 1) FILL_ZH(18, 2) FILL_ZH(19, 3) FILL_ZH(20, 4) FILL_ZH(21, 5)
        FILL_ZH(22, 6) FILL_ZH(23, 7) FILL_ZH(24, 8) FILL_ZH(25, 9) FILL_ZH(26, 10) FILL_ZH(27, 11)
        FILL_ZH(28, 12) FILL_ZH(29, 13) FILL_ZH(30, 14) FILL_ZH(31, 15)
        FILL_P(0, vl1) FILL_P(1, vl2) FILL_P(2, vl3) FILL_P(3, vl4) FILL_P(4, vl5) FILL_P(5, vl6)
        FILL_P(6, vl7) FILL_P(7, vl8) FILL_P(8, vl16) FILL_P(9, vl32) FILL_P(10, vl64) FILL_P(11, pow2)
        FILL_P(12, mul3) FILL_P(13, mul4) FILL_P(14, all) FILL_P(15, vl128)
        "1: isb\n mrs x9, cntvct_el0\n cmp x9, %2\n b.lo 1b\n"
        STORE_Z(0) STORE_Z(1) STORE_Z(2) STORE_Z(3) STORE_Z(4) STORE_Z(5) STORE_Z(6) STORE_Z(7)
        STORE_Z(8) STORE_Z(9) STORE_Z(10) STORE_Z(11) STORE_Z(12) STORE_Z(13) STORE_Z(14) STORE_Z(15)
        STORE_Z(16) STORE_Z(17) STORE_Z(18) STORE_Z(19) STORE_Z(20) STORE_Z(21) STORE_Z(22) STORE_Z(23)
        STORE_Z(24) STORE_Z(25) STORE_Z(26) STORE_Z(27) STORE_Z(28) STORE_Z(29) STORE_Z(30) STORE_Z(31)
        STORE_P(0) STORE_P(1) STORE_P(2) STORE_P(3) STORE_P(4) STORE_P(5) STORE_P(6) STORE_P(7)
        STORE_P(8) STORE_P(9) STORE_P(10) STORE_P(11) STORE_P(12) STORE_P(13) STORE_P(14) STORE_P(15)
        :: "r"(z_saved), "r"(p_saved), "r"(end) : "x9", "memory", "cc");
}

// The predicate `ptrue pattern` gives for `elements` byte elements (as many as the vector's bytes).
static uint64_t pattern_count(int n, uint64_t elements) {
    static const int fixed[16] = {1, 2, 3, 4, 5, 6, 7, 8, 16, 32, 64, -1, -2, -3, -4, 128};
    int rule = fixed[n];
    if (rule > 0) return (uint64_t)rule <= elements ? (uint64_t)rule : 0;
    if (rule == -1) { uint64_t p = 1; while (p * 2 <= elements) p *= 2; return p; }   // POW2
    if (rule == -2) return elements - elements % 3;                                   // MUL3
    if (rule == -3) return elements - elements % 4;                                   // MUL4
    return elements;                                                                  // ALL
}

static int check_sve(uint64_t seconds) {
    uint64_t vl = vector_bytes();
    sve_fill_hold_store(seconds);
    for (int n = 0; n < 32; n++) {
        for (uint64_t i = 0; i < vl; i++) {
            uint8_t expected = n < 16 ? (uint8_t)(n + 3 * i) : (uint8_t)(n - 16 + 5 * i);
            if (z_saved[n * vl + i] != expected) {
                print("sve corrupt z"); print_number(n); print(" byte "); print_number(i);
                print(" got "); print_number(z_saved[n * vl + i]); print(" expected "); print_number(expected);
                print("\n");
                return 1;
            }
        }
    }
    for (int n = 0; n < 16; n++) {
        uint64_t active = pattern_count(n, vl);
        for (uint64_t bit = 0; bit < vl; bit++) {
            int set = (p_saved[n * (vl / 8) + bit / 8] >> (bit % 8)) & 1;
            if (set != (bit < active)) {
                print("sve corrupt p"); print_number(n); print(" element "); print_number(bit); print("\n");
                return 1;
            }
        }
    }
    print("sve ok vl="); print_number(vl); print("\n");
    return 0;
}

__attribute__((target("pauth"), noinline))
static uint64_t sign(uint64_t pointer, uint64_t modifier) {
    __asm__ volatile("pacia %0, %1" : "+r"(pointer) : "r"(modifier));
    return pointer;
}

__attribute__((target("pauth"), noinline))
static uint64_t authenticate(uint64_t pointer, uint64_t modifier) {
    __asm__ volatile("autia %0, %1" : "+r"(pointer) : "r"(modifier));
    return pointer;
}

static int check_pac(uint64_t seconds) {
    uint64_t pointer = (uint64_t)(uintptr_t)&check_pac, modifier = 0x5eed;
    uint64_t before = sign(pointer, modifier);
    hold(seconds);
    uint64_t after = sign(pointer, modifier);
    if (before == pointer) { print("pac inactive: PACIA left the pointer unsigned\n"); return 1; }
    if (after != before || authenticate(before, modifier) != pointer) {
        print("pac changed "); print_number(before); print(" "); print_number(after); print("\n");
        return 1;
    }
    print("pac ok\n");
    return 0;
}

int start(int argc, char **argv) {
    if (argc != 3) { print("usage: cpu_state sve|pac SECONDS\n"); return 2; }
    uint64_t seconds = 0;
    for (const char *c = argv[2]; *c >= '0' && *c <= '9'; c++) seconds = seconds * 10 + (uint64_t)(*c - '0');
    if (equal(argv[1], "sve")) return check_sve(seconds);
    if (equal(argv[1], "pac")) return check_pac(seconds);
    print("usage: cpu_state sve|pac SECONDS\n");
    return 2;
}

// The kernel starts a static executable with sp at argc, then argv.
__asm__(".globl _start\n_start:\n ldr x0, [sp]\n add x1, sp, #8\n bl start\n b exit_with\n");
void exit_with(int status) { sys_exit(status); }
