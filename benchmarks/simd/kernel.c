/* Vectorisable kernels for benchmarks/simd.py: built once as scalar and once with -msimd128. */
#include <stdint.h>

#define N 4096

static int32_t xs[N], ys[N];
static float fx[N], fy[N], fz[N];
static uint8_t bytes[N * 4];
static uint32_t counts[256];

__attribute__((export_name("init"))) void init(uint32_t seed) {
    for (int i = 0; i < N; i++) {
        seed = seed * 1103515245u + 12345u;
        xs[i] = (int32_t)(seed >> 8) % 1000;
        ys[i] = (int32_t)(seed >> 4) % 777;
        fx[i] = (float)(seed % 1000) * 0.25f;
        fy[i] = (float)(seed % 333) * 0.5f;
    }
    for (int i = 0; i < N * 4; i++) {
        seed = seed * 1103515245u + 12345u;
        bytes[i] = (uint8_t)(seed >> 16);
    }
}

/* integer dot product: i32x4.mul and i32x4.add */
__attribute__((export_name("dot"))) int32_t dot(int n) {
    int32_t acc = 0;
    for (int i = 0; i < n; i++) acc += xs[i] * ys[i];
    return acc;
}

/* z = a*x + y over floats: f32x4.mul and f32x4.add, loads and stores */
__attribute__((export_name("saxpy"))) float saxpy(int n, float a) {
    for (int i = 0; i < n; i++) fz[i] = a * fx[i] + fy[i];
    return fz[n / 2];
}

/* sum of absolute differences of two byte rows: i8x16 / extending arithmetic */
__attribute__((export_name("sad"))) uint32_t sad(int n) {
    uint32_t acc = 0;
    for (int i = 0; i < n; i++) {
        int d = (int)bytes[i] - (int)bytes[i + N * 2];
        acc += (uint32_t)(d < 0 ? -d : d);
    }
    return acc;
}
