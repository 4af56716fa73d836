/* The compiled CPU resampler of the fixed-point modes ("pil", "torch-uint8"), fused with normalisation and
 * the patch layout. Backend: qwen_vis_prep/backends/native.py; the oracle is the reference backend.
 *
 * One pass of a separable resize turns an 8-bit image into an 8-bit image:
 *
 *     out = clamp((2**21 + sum_k in[start + k] * weight[k]) >> 22, 0, 255)     (int32 arithmetic)
 *
 * with the tables of qwen_vis_prep.resample_tables.window_taps (Pillow's coefficients in "pil" mode,
 * torch's scaled to the same 22 bits in "torch-uint8" mode), so the results are those of Pillow's
 * ImagingResample{Horizontal,Vertical}_8bpc and of torch's uint8 antialiased kernel bit for bit.
 *
 * Layouts: a source is read through its strides (channel, row, column) in elements, planar (column stride 1)
 * or interleaved (channel stride 1, column stride 3); intermediates are planar [3][H][W]. Each pass produces
 * one planar row of levels at a time (row[c * width + x]) and hands it to a sink: a planar uint8 image, or
 * the patch rows of the output (levels looked up in a per-channel table of normalised values in the output
 * dtype, written a band of patch rows at a time to the temporal slots [lo, hi)).
 *
 * Vectorisation: a vertical pass combines whole rows, contiguous along x (and c when interleaved); its loop
 * is compiled for AVX2 and for the baseline, picked at load time (target clones, GCC/Clang on x86-64
 * Linux). A horizontal pass transposes a strip of STRIP rows into columns cols[x][c * STRIP + r] (SSE2 byte
 * transposes), combines those columns as vectors of LANES int32 lanes (AVX2 where the CPU has it, else a
 * portable loop) and transposes the results back.
 *
 * Every entry point releases the GIL; callers run row ranges of one pass on several threads.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PRECISION_BITS 22
#define HALF (1 << (PRECISION_BITS - 1))
#define STRIP 16                /* rows a horizontal pass resamples together */
#define LANES (3 * STRIP)       /* int32 accumulators per output column of a strip */
#define CHUNK 1024              /* elements of a vertical pass accumulated at once (stays in L1) */

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__INTEL_COMPILER)
#define HOT __attribute__((target_clones("avx2", "default")))
#else
#define HOT
#endif
#if defined(__GNUC__) && defined(__x86_64__)
#define HAVE_AVX2
#endif
#if defined(__SSE2__) || defined(HAVE_AVX2)
#include <immintrin.h>
#endif

typedef struct {
    const uint8_t *data;
    Py_ssize_t sc, sy, sx; /* element strides of channel, row, column */
    int h, w;
} Source;

typedef struct {
    /* planar levels [3][h][w] when levels != NULL, else patch rows */
    uint8_t *levels;
    int h, w;
    char *out;              /* patch rows [rows, dim] of elem-byte values */
    const char *table;      /* [3][256] elem-byte normalised values */
    int elem, p, m, t, lo, hi;
    Py_ssize_t dim;
} Sink;

static inline uint8_t clip8(int32_t v) {
    v >>= PRECISION_BITS;
    return v < 0 ? 0 : (v > 255 ? 255 : (uint8_t)v);
}

/* ---------------------------------------------------------------------------------------- sinks */

/* The rows of one call on their way to a sink. Patch rows are written a band of p image rows at a time, so
 * each patch's values go out as contiguous p * p runs (one per channel and temporal slot). */
typedef struct {
    const Sink *sink;
    uint8_t *band;          /* p planar rows (patches), or one (levels) */
    uint16_t *values;       /* p * p values of one patch and channel (elem <= 4 bytes: two uint16 each) */
} Writer;

static int writer_open(Writer *wr, const Sink *s) {
    wr->sink = s;
    const int rows = s->levels ? 1 : s->p;
    wr->band = malloc((size_t)rows * 3 * s->w + (s->levels ? 0 : (size_t)s->p * s->p * 4));
    wr->values = s->levels ? NULL : (uint16_t *)(wr->band + (Py_ssize_t)rows * 3 * s->w);
    return wr->band ? 0 : -1;
}

static void writer_close(Writer *wr) {
#if defined(__SSE2__)
    _mm_sfence();  /* the streaming stores are visible before the caller goes on */
#endif
    free(wr->band);
}

/* Where planar row y (row[c * w + x]) is to be written; row_done(wr, y) once it is. */
static inline uint8_t *row_buffer(const Writer *wr, int y) {
    return wr->sink->levels ? wr->band : wr->band + (Py_ssize_t)(y % wr->sink->p) * 3 * wr->sink->w;
}

/* Copies n bytes of finished output. Where both ends allow, with streaming stores: the output is written
 * once and not read back here, so it need not evict the rows the passes are still reading. */
static inline void write_run(char *dst, const void *src, size_t n) {
#if defined(__SSE2__)
    if (((uintptr_t)dst & 15) == 0 && (n & 15) == 0) {
        const __m128i *from = (const __m128i *)src;
        for (size_t i = 0; i < n / 16; i++) _mm_stream_si128((__m128i *)dst + i, _mm_loadu_si128(from + i));
        return;
    }
#endif
    memcpy(dst, src, n);
}

/* Patches of the band of rows [gy * p, gy * p + p): every patch of grid row gy into its output row. */
static void flush_band(const Writer *wr, int gy) {
    const Sink *s = wr->sink;
    const int w = s->w, p = s->p, m = s->m, t = s->t, elem = s->elem;
    const int wy = gy / m, iy = gy % m, grid_w = w / p, windows_w = grid_w / m;
    const size_t run = (size_t)p * p * elem;
    for (int gx = 0; gx < grid_w; gx++) {
        const int wx = gx / m, ix = gx % m;
        const Py_ssize_t r = ((Py_ssize_t)wy * windows_w + wx) * m * m + (Py_ssize_t)iy * m + ix;
        char *base = s->out + r * s->dim * elem;
        for (int c = 0; c < 3; c++) {
            const uint8_t *src = wr->band + (Py_ssize_t)c * w + (Py_ssize_t)gx * p;
            if (elem == 4) {
                const uint32_t *tab = (const uint32_t *)s->table + c * 256;
                uint32_t *dst = (uint32_t *)wr->values;
                for (int py = 0; py < p; py++, src += 3 * (Py_ssize_t)w)
                    for (int px = 0; px < p; px++) *dst++ = tab[src[px]];
            } else {
                const uint16_t *tab = (const uint16_t *)s->table + c * 256;
                uint16_t *dst = wr->values;
                for (int py = 0; py < p; py++, src += 3 * (Py_ssize_t)w)
                    for (int px = 0; px < p; px++) *dst++ = tab[src[px]];
            }
            for (int k = s->lo; k < s->hi; k++) write_run(base + (Py_ssize_t)(c * t + k) * run, wr->values, run);
        }
    }
}

static void row_done(const Writer *wr, int y) {
    const Sink *s = wr->sink;
    if (s->levels) {
        for (int c = 0; c < 3; c++)
            memcpy(s->levels + ((Py_ssize_t)c * s->h + y) * s->w, wr->band + (Py_ssize_t)c * s->w, (size_t)s->w);
    } else if (y % s->p == s->p - 1) {
        flush_band(wr, y / s->p);
    }
}

/* ---------------------------------------------------------------------------------------- transposes */

/* dst[j][i] = src[i][j] for i, j < 16: row i of the block starts at src[i], row j of the result at dst[j].
 * SSE2 (every x86-64): four rounds of byte interleaving; round r pairs row i with row i + 8, which moves
 * one bit of the column index into the row index (after four, rows and columns have swapped). */
static void transpose16(const uint8_t *const src[16], uint8_t *const dst[16]) {
#if defined(__SSE2__)
    __m128i a[16], b[16];
    for (int i = 0; i < 16; i++) a[i] = _mm_loadu_si128((const __m128i *)src[i]);
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < 8; i++) {
            b[2 * i] = _mm_unpacklo_epi8(a[i], a[i + 8]);
            b[2 * i + 1] = _mm_unpackhi_epi8(a[i], a[i + 8]);
        }
        memcpy(a, b, sizeof a);
    }
    for (int j = 0; j < 16; j++) _mm_storeu_si128((__m128i *)dst[j], a[j]);
#else
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 16; j++) dst[j][i] = src[i][j];
#endif
}

/* out[j * out_stride + r] = lines[r][j] for j < n, r < 16: sixteen lines written column by column. */
static void gather_columns(const uint8_t *const lines[16], Py_ssize_t n, uint8_t *out, Py_ssize_t out_stride) {
    Py_ssize_t j = 0;
    const uint8_t *src[16];
    uint8_t *dst[16];
    for (; j + 16 <= n; j += 16) {
        for (int i = 0; i < 16; i++) {
            src[i] = lines[i] + j;
            dst[i] = out + (j + i) * out_stride;
        }
        transpose16(src, dst);
    }
    for (; j < n; j++)
        for (int r = 0; r < 16; r++) out[j * out_stride + r] = lines[r][j];
}

/* The inverse: lines[r][j] = in[j * in_stride + r] for j < n, r < 16. */
static void scatter_columns(const uint8_t *in, Py_ssize_t in_stride, Py_ssize_t n, uint8_t *const lines[16]) {
    Py_ssize_t j = 0;
    const uint8_t *src[16];
    uint8_t *dst[16];
    for (; j + 16 <= n; j += 16) {
        for (int i = 0; i < 16; i++) {
            src[i] = in + (j + i) * in_stride;
            dst[i] = lines[i] + j;
        }
        transpose16(src, dst);
    }
    for (; j < n; j++)
        for (int r = 0; r < 16; r++) lines[r][j] = in[j * in_stride + r];
}

/* ---------------------------------------------------------------------------------------- kernels */

/* dst[i] = clip8(HALF + sum_k src[k * stride + i] * weight[k]) for i < n. */
HOT static void vertical_line(uint8_t *restrict dst, const uint8_t *restrict src, Py_ssize_t stride,
                              const int32_t *restrict weight, int taps, Py_ssize_t n) {
    int32_t acc[CHUNK];
    for (Py_ssize_t i0 = 0; i0 < n; i0 += CHUNK) {
        const int len = (int)(n - i0 < CHUNK ? n - i0 : CHUNK);
        for (int i = 0; i < len; i++) acc[i] = HALF;
        for (int k = 0; k < taps; k++) {
            const uint8_t *restrict line = src + k * stride + i0;
            const int32_t wk = weight[k];
            for (int i = 0; i < len; i++) acc[i] += (int32_t)line[i] * wk;
        }
        for (int i = 0; i < len; i++) dst[i0 + i] = clip8(acc[i]);
    }
}

/* res[xo][l] = clip8(HALF + sum_k cols[start[xo] + k][l] * weight[xo][k]) for every lane l of a strip. */
static void horizontal_strip_portable(uint8_t *restrict res, const uint8_t *restrict cols,
                                      const int32_t *restrict start, const int32_t *restrict weight, int taps,
                                      int out_w) {
    for (int xo = 0; xo < out_w; xo++) {
        int32_t acc[LANES];
        for (int l = 0; l < LANES; l++) acc[l] = HALF;
        const uint8_t *restrict col = cols + (Py_ssize_t)start[xo] * LANES;
        const int32_t *restrict wx = weight + (Py_ssize_t)xo * taps;
        for (int k = 0; k < taps; k++)
            for (int l = 0; l < LANES; l++) acc[l] += (int32_t)col[k * LANES + l] * wx[k];
        for (int l = 0; l < LANES; l++) res[(Py_ssize_t)xo * LANES + l] = clip8(acc[l]);
    }
}

#ifdef HAVE_AVX2
/* The same with AVX2: six registers of eight int32 lanes; saturating packs do the clamp to [0, 255]. */
__attribute__((target("avx2"))) static void horizontal_strip_avx2(
    uint8_t *restrict res, const uint8_t *restrict cols, const int32_t *restrict start,
    const int32_t *restrict weight, int taps, int out_w) {
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);  /* undoes the packs' lane interleave */
    for (int xo = 0; xo < out_w; xo++) {
        __m256i a[6];
        for (int j = 0; j < 6; j++) a[j] = _mm256_set1_epi32(HALF);
        const uint8_t *col = cols + (Py_ssize_t)start[xo] * LANES;
        const int32_t *wx = weight + (Py_ssize_t)xo * taps;
        for (int k = 0; k < taps; k++, col += LANES) {
            const __m256i wk = _mm256_set1_epi32(wx[k]);
            for (int j = 0; j < 6; j++) {
                const __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(col + 8 * j)));
                a[j] = _mm256_add_epi32(a[j], _mm256_mullo_epi32(v, wk));
            }
        }
        for (int j = 0; j < 6; j++) a[j] = _mm256_srai_epi32(a[j], PRECISION_BITS);
        const __m256i lo = _mm256_packus_epi16(_mm256_packs_epi32(a[0], a[1]), _mm256_packs_epi32(a[2], a[3]));
        const __m256i hi = _mm256_packus_epi16(_mm256_packs_epi32(a[4], a[5]), _mm256_setzero_si256());
        uint8_t *dst = res + (Py_ssize_t)xo * LANES;
        _mm256_storeu_si256((__m256i *)dst, _mm256_permutevar8x32_epi32(lo, order));
        _mm_storeu_si128((__m128i *)(dst + 32), _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(hi, order)));
    }
}
#endif

typedef void (*strip_kernel)(uint8_t *, const uint8_t *, const int32_t *, const int32_t *, int, int);
static strip_kernel horizontal_strip = horizontal_strip_portable;  /* set in PyInit__resample */

/* ---------------------------------------------------------------------------------------- passes */

/* Output rows [y0, y1) of a vertical pass (rows of src->w columns), each written to the sink. */
static int vertical_pass(const Source *src, const int32_t *start, const int32_t *weight, int taps, int y0,
                         int y1, const Sink *sink) {
    const int w = src->w;
    const int interleaved = src->sx != 1;
    Writer wr;
    if (writer_open(&wr, sink)) return -1;
    uint8_t *mixed = interleaved ? malloc((size_t)3 * w) : NULL;
    if (interleaved && !mixed) {
        writer_close(&wr);
        return -1;
    }
    for (int y = y0; y < y1; y++) {
        uint8_t *row = row_buffer(&wr, y);
        const uint8_t *first = src->data + (Py_ssize_t)start[y] * src->sy;
        const int32_t *wy = weight + (Py_ssize_t)y * taps;
        if (interleaved) {  /* one line of 3w values, then planar */
            vertical_line(mixed, first, src->sy, wy, taps, (Py_ssize_t)3 * w);
            for (int c = 0; c < 3; c++)
                for (int x = 0; x < w; x++) row[c * w + x] = mixed[3 * x + c];
        } else {
            for (int c = 0; c < 3; c++)
                vertical_line(row + (Py_ssize_t)c * w, first + c * src->sc, src->sy, wy, taps, w);
        }
        row_done(&wr, y);
    }
    free(mixed);
    writer_close(&wr);
    return 0;
}

/* Rows [y0, y1) of a horizontal pass to out_w columns, each written to the sink. STRIP rows at a time are
 * transposed into cols[x][c * STRIP + r] (a strip shorter than STRIP repeats its last row), resampled as
 * columns of LANES lanes, and transposed back. */
static int horizontal_pass(const Source *src, const int32_t *start, const int32_t *weight, int taps,
                           int out_w, int y0, int y1, const Sink *sink) {
    const int w = src->w;
    const int interleaved = src->sx != 1;
    Writer wr;
    if (writer_open(&wr, sink)) return -1;
    uint8_t *cols = malloc((size_t)w * LANES + (size_t)out_w * LANES + (size_t)STRIP * 3 * out_w);
    if (!cols) {
        writer_close(&wr);
        return -1;
    }
    uint8_t *res = cols + (Py_ssize_t)w * LANES;
    uint8_t *strip = res + (Py_ssize_t)out_w * LANES;
    const uint8_t *lines[STRIP];
    uint8_t *outs[STRIP];
    for (int y = y0; y < y1; y += STRIP) {
        const int n = y1 - y < STRIP ? y1 - y : STRIP;
        if (interleaved) {  /* a line's values x * 3 + c are the columns' lanes c * STRIP + r in order */
            for (int r = 0; r < STRIP; r++) lines[r] = src->data + (Py_ssize_t)(y + (r < n ? r : n - 1)) * src->sy;
            gather_columns(lines, (Py_ssize_t)3 * w, cols, STRIP);
        } else {
            for (int c = 0; c < 3; c++) {
                for (int r = 0; r < STRIP; r++)
                    lines[r] = src->data + c * src->sc + (Py_ssize_t)(y + (r < n ? r : n - 1)) * src->sy;
                gather_columns(lines, w, cols + c * STRIP, LANES);
            }
        }
        horizontal_strip(res, cols, start, weight, taps, out_w);
        for (int c = 0; c < 3; c++) {
            for (int r = 0; r < STRIP; r++) outs[r] = strip + ((Py_ssize_t)r * 3 + c) * out_w;
            scatter_columns(res + c * STRIP, LANES, out_w, outs);
        }
        for (int r = 0; r < n; r++) {
            memcpy(row_buffer(&wr, y + r), strip + (Py_ssize_t)r * 3 * out_w, (size_t)3 * out_w);
            row_done(&wr, y + r);
        }
    }
    free(cols);
    writer_close(&wr);
    return 0;
}

/* Rows [y0, y1) of src as they are (no resize), each written to the sink. */
static int copy_rows(const Source *src, int y0, int y1, const Sink *sink) {
    const int w = src->w;
    Writer wr;
    if (writer_open(&wr, sink)) return -1;
    for (int y = y0; y < y1; y++) {
        uint8_t *row = row_buffer(&wr, y);
        for (int c = 0; c < 3; c++) {
            const uint8_t *line = src->data + (Py_ssize_t)y * src->sy + c * src->sc;
            for (int x = 0; x < w; x++) row[c * w + x] = line[x * src->sx];
        }
        row_done(&wr, y);
    }
    writer_close(&wr);
    return 0;
}

/* ---------------------------------------------------------------------------------------- Python */

static const char resample_rows_doc[] =
    "resample_rows(kind, src, sc, sy, sx, in_h, in_w, start, weight, taps, out_size, y0, y1, sink)\n\n"
    "One pass over output rows [y0, y1). kind: 0 copy, 1 vertical (out_size rows), 2 horizontal (out_size\n"
    "columns). src, start, weight and the sink's buffers are addresses of memory the caller keeps alive:\n"
    "src uint8 read through element strides (sc, sy, sx), sx == 1 or (sc, sx) == (1, 3); start [out_size] int32; weight [out_size, taps]\n"
    "int32 (resample_tables.window_taps). sink: ('levels', address) of a planar [3, out_h, out_w] uint8\n"
    "image, or ('patches', address, dim, elem, table, p, m, t, lo, hi) of patch rows [rows, dim] with a\n"
    "[3, 256] table of elem-byte values. The GIL is released while it runs.";

static PyObject *resample_rows(PyObject *self, PyObject *args) {
    int kind, in_h, in_w, taps, out_size, y0, y1;
    unsigned long long src_addr, start_addr, weight_addr;
    Py_ssize_t sc, sy, sx;
    PyObject *sink_spec;
    (void)self;
    if (!PyArg_ParseTuple(args, "iKnnniiKKiiiiO!", &kind, &src_addr, &sc, &sy, &sx, &in_h, &in_w,
                          &start_addr, &weight_addr, &taps, &out_size, &y0, &y1, &PyTuple_Type, &sink_spec))
        return NULL;
    if (kind < 0 || kind > 2 || in_h < 1 || in_w < 1 || out_size < 1 || y0 < 0 || y1 < y0 ||
        (kind != 0 && taps < 1) || !(sx == 1 || (sc == 1 && sx == 3)) || sc < 0 || sy < 0) {
        PyErr_SetString(PyExc_ValueError, "resample_rows: bad pass arguments");
        return NULL;
    }
    Source src = {(const uint8_t *)(uintptr_t)src_addr, sc, sy, sx, in_h, in_w};
    Sink sink;
    memset(&sink, 0, sizeof sink);
    sink.h = kind == 1 ? out_size : in_h;
    sink.w = kind == 2 ? out_size : in_w;
    const char *what = NULL;
    unsigned long long out_addr = 0, table_addr = 0;
    if (PyTuple_GET_SIZE(sink_spec) == 2) {
        if (!PyArg_ParseTuple(sink_spec, "sK", &what, &out_addr)) return NULL;
        if (strcmp(what, "levels") != 0) goto bad_sink;
        sink.levels = (uint8_t *)(uintptr_t)out_addr;
    } else {
        if (!PyArg_ParseTuple(sink_spec, "sKniKiiiii", &what, &out_addr, &sink.dim, &sink.elem, &table_addr,
                              &sink.p, &sink.m, &sink.t, &sink.lo, &sink.hi))
            return NULL;
        if (strcmp(what, "patches") != 0 || (sink.elem != 2 && sink.elem != 4) || sink.p < 1 || sink.m < 1 ||
            sink.w % (sink.p * sink.m) || sink.h % (sink.p * sink.m) || sink.lo < 0 || sink.hi > sink.t ||
            sink.lo >= sink.hi || sink.dim < 3 * (Py_ssize_t)sink.t * sink.p * sink.p)
            goto bad_sink;
        sink.out = (char *)(uintptr_t)out_addr;
        sink.table = (const char *)(uintptr_t)table_addr;
    }
    if (y1 > sink.h || (!sink.levels && (y0 % sink.p || y1 % sink.p))) {
        PyErr_SetString(PyExc_ValueError, "resample_rows: rows past the end of the output, or a range of "
                                          "patch rows that does not start and end on a patch boundary");
        return NULL;
    }
    const int32_t *start = (const int32_t *)(uintptr_t)start_addr;
    const int32_t *weight = (const int32_t *)(uintptr_t)weight_addr;
    int status;
    Py_BEGIN_ALLOW_THREADS
    if (kind == 0)
        status = copy_rows(&src, y0, y1, &sink);
    else if (kind == 1)
        status = vertical_pass(&src, start, weight, taps, y0, y1, &sink);
    else
        status = horizontal_pass(&src, start, weight, taps, out_size, y0, y1, &sink);
    Py_END_ALLOW_THREADS
    if (status) return PyErr_NoMemory();
    Py_RETURN_NONE;
bad_sink:
    PyErr_SetString(PyExc_ValueError, "resample_rows: bad sink");
    return NULL;
}

static int cpu_has_avx2(void) {
#ifdef HAVE_AVX2
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2");
#else
    return 0;
#endif
}

static const char strip_kernel_doc[] =
    "strip_kernel(name=None) -> str\n\n"
    "The horizontal strip kernel in use, 'avx2' or 'portable' (chosen at import from the CPU); with a name,\n"
    "switch to it first (tests run both; 'avx2' only where the CPU has it).";

static PyObject *strip_kernel_select(PyObject *self, PyObject *args) {
    const char *name = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "|z", &name)) return NULL;
    if (name && strcmp(name, "portable") == 0) {
        horizontal_strip = horizontal_strip_portable;
    } else if (name && strcmp(name, "avx2") == 0) {
#ifdef HAVE_AVX2
        if (!cpu_has_avx2()) {
            PyErr_SetString(PyExc_ValueError, "strip_kernel: this CPU has no AVX2");
            return NULL;
        }
        horizontal_strip = horizontal_strip_avx2;
#else
        PyErr_SetString(PyExc_ValueError, "strip_kernel: built without AVX2 code");
        return NULL;
#endif
    } else if (name) {
        PyErr_Format(PyExc_ValueError, "strip_kernel: expected 'avx2' or 'portable', got '%s'", name);
        return NULL;
    }
    return PyUnicode_FromString(horizontal_strip == horizontal_strip_portable ? "portable" : "avx2");
}

static PyMethodDef methods[] = {
    {"resample_rows", resample_rows, METH_VARARGS, resample_rows_doc},
    {"strip_kernel", strip_kernel_select, METH_VARARGS, strip_kernel_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_resample",
    "Compiled fixed-point resampler of qwen_vis_prep (see qwen_vis_prep/backends/native.py).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__resample(void) {
#ifdef HAVE_AVX2
    if (cpu_has_avx2()) horizontal_strip = horizontal_strip_avx2;
#endif
    PyObject *m = PyModule_Create(&module);
    if (m && PyModule_AddIntConstant(m, "STRIP", STRIP)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
