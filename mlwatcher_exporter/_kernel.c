/* One pass over a stage's probabilities: what bulk processing needs of every row.
 *
 * numpy needs five calls for it (min, max, argmax, take, searchsorted + bincount), each
 * a full pass over the stage with its own per-call cost; an argmax along a short last
 * axis alone costs ~30 ns per row. This loop reads each row once, in a few ns.
 *
 * The module is optional: mlwatcher_exporter/kernel.py holds the same computation in
 * numpy, used when this extension is not built or MLWATCHER_PURE=1 is set, and the
 * tests check that both give the same results. summarize takes its arrays through the
 * buffer protocol; stage_rows, on the request path, through numpy's C API (numpy is a
 * build requirement, pyproject.toml).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

static int
get_buffer(PyObject *obj, Py_buffer *view, int writable, char kind, int ndim,
           const char *name)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) {
        return -1;
    }
    const char *format = view->format ? view->format : "B";
    if (format[0] == '<' || format[0] == '=' || format[0] == '@') {
        format++;
    }
    int ok;
    if (kind == 'd') {
        ok = format[0] == 'd' && format[1] == '\0' && view->itemsize == 8;
    }
    else if (kind == '?') { /* a mask: numpy bool or uint8 */
        ok = (format[0] == '?' || format[0] == 'B') && format[1] == '\0'
             && view->itemsize == 1;
    }
    else { /* a 64-bit signed integer: 'q', or 'l' where long is 64 bits */
        ok = (format[0] == 'q' || format[0] == 'l') && format[1] == '\0'
             && view->itemsize == 8;
    }
    if (!ok || view->ndim != ndim) {
        PyErr_Format(PyExc_TypeError,
                     "%s has format %s and %d dimensions, must be %s with %d",
                     name, view->format ? view->format : "B", view->ndim,
                     kind == 'd' ? "float64" : kind == '?' ? "bool" : "int64", ndim);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* The kernels below may be compiled twice on x86-64, for AVX2 and for any processor,
 * the loader picking one at run time (GCC and clang function multiversioning, which
 * needs glibc's ifunc: elsewhere they are compiled once, for any processor). */
#if defined(__x86_64__) && defined(__GNUC__) && defined(__GLIBC__)
#define AVX2_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define AVX2_CLONES
#endif

/* Counts of rows per cell, added into out[0..n_cells): one counter incremented row
 * after row waits for its own previous store each time, and most rows land in the same
 * few cells, so four copies of the counters (a row's copy: its index mod 4) keep four
 * increments in flight. `scratch` holds 4 * n_cells int64 zeros. */
#define LANES 4

static void
add_lanes(int64_t *restrict out, const int64_t *restrict scratch, Py_ssize_t n_cells)
{
    for (Py_ssize_t i = 0; i < n_cells; i++) {
        out[i] += scratch[i] + scratch[n_cells + i] + scratch[2 * n_cells + i]
                  + scratch[3 * n_cells + i];
    }
}

/* Rows per bucket of `values`, added into `out` (n_edges + 1 cells):
 * numpy.searchsorted(edges, value, side="left"), NaN in the last bucket as numpy sorts
 * NaN last. Up to 32 edges a count of the edges below (it vectorises, no chain of
 * dependent loads), beyond a binary search without branches. */
AVX2_CLONES
static void
count_buckets(const double *restrict values, Py_ssize_t n, const double *restrict e,
              Py_ssize_t n_edges, int64_t *restrict scratch)
{
    const Py_ssize_t cells = n_edges + 1;
    Py_ssize_t search_start = 1;  /* the largest power of two <= n_edges */
    while (search_start * 2 <= n_edges) search_start *= 2;
    const int linear = n_edges <= 32;
    for (Py_ssize_t row = 0; row < n; row++) {
        double value = values[row];
        Py_ssize_t lo = 0;
        if (linear) {
            for (Py_ssize_t i = 0; i < n_edges; i++) lo += e[i] < value;
        }
        else {
            for (Py_ssize_t half = search_start; half > 0; half >>= 1) {
                lo = lo + half <= n_edges && e[lo + half - 1] < value ? lo + half : lo;
            }
        }
        scratch[(row & (LANES - 1)) * cells + (value != value ? n_edges : lo)]++;
    }
}

static void
add_bucket_counts(const double *restrict values, Py_ssize_t n, const double *restrict e,
                  Py_ssize_t n_edges, int64_t *restrict out, int64_t *restrict scratch)
{
    count_buckets(values, n, e, n_edges, scratch);
    add_lanes(out, scratch, n_edges + 1);
}

/* spread12 = top - second per row, bucketed as add_bucket_counts into `out`; returns
 * their sum. In chunks that stay in L1: no array of spreads, one pass over the rows
 * where numpy takes a subtraction, a bucketing and a sum. */
#define SPREAD_CHUNK 512

AVX2_CLONES
static double
add_spread_counts(const double *restrict top, const double *restrict second, Py_ssize_t n,
                  const double *restrict e, Py_ssize_t n_edges, int64_t *restrict out,
                  int64_t *restrict scratch)
{
    double chunk[SPREAD_CHUNK];
    double sums[LANES] = {0.0};
    for (Py_ssize_t start = 0; start < n; start += SPREAD_CHUNK) {
        Py_ssize_t m = n - start < SPREAD_CHUNK ? n - start : SPREAD_CHUNK;
        for (Py_ssize_t i = 0; i < m; i++) chunk[i] = top[start + i] - second[start + i];
        for (Py_ssize_t i = 0; i + LANES <= m; i += LANES) {
            for (int k = 0; k < LANES; k++) sums[k] += chunk[i + k];
        }
        for (Py_ssize_t i = m - m % LANES; i < m; i++) sums[0] += chunk[i];
        count_buckets(chunk, m, e, n_edges, scratch);
    }
    add_lanes(out, scratch, n_edges + 1);
    return (sums[0] + sums[1]) + (sums[2] + sums[3]);
}

/* Rows per class of `predicted` (indices in [0, n_classes)), added into `out`. */
static void
add_class_counts(const int64_t *restrict predicted, Py_ssize_t n, Py_ssize_t n_classes,
                 int64_t *restrict out, int64_t *restrict scratch)
{
    for (Py_ssize_t row = 0; row < n; row++) {
        scratch[(row & (LANES - 1)) * n_classes + predicted[row]]++;
    }
    add_lanes(out, scratch, n_classes);
}

/* ---- summarize, four rows per instruction (x86-64 with AVX2, chosen at run time) ----
 * The scalar loop of summarize is bound by its instruction count (about eight per class
 * value), not by its dependency chains: one AVX2 instruction does the same step for
 * four rows. Each step is the scalar loop's own IEEE comparison (min/max pd return their
 * second operand when either is NaN, exactly as the ternaries below), in the same order
 * per row, so the results are the same bit for bit. */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define SUMMARIZE_AVX2 1

/* Rows [0, n_rows - n_rows % 4) of summarize's main loop (counted after it);
 * returns the rows done. */
__attribute__((target("avx2")))
static Py_ssize_t
summarize_avx2(const double *restrict p, Py_ssize_t n_rows, Py_ssize_t n_classes,
               double first_second, int64_t *restrict out_class,
               double *restrict out_top, double *restrict out_second,
               double *low, double *high, int *nan_seen)
{
    const Py_ssize_t n = n_classes;
    __m256d all_low = _mm256_set1_pd(INFINITY), all_high = _mm256_set1_pd(-INFINITY);
    __m256d unordered = _mm256_setzero_pd();
    Py_ssize_t row = 0;
    for (; row + 4 <= n_rows; row += 4) {
        const double *r = p + row * n;
        __m256d top = _mm256_set_pd(r[3 * n], r[2 * n], r[n], r[0]);
        __m256d row_low = top, row_high = top, row_sum = top;
        __m256d second = _mm256_set1_pd(first_second);
        __m256d best = _mm256_setzero_pd();
        for (Py_ssize_t c = 1; c < n; c++) {
            __m256d v = _mm256_set_pd(r[3 * n + c], r[2 * n + c], r[n + c], r[c]);
            __m256d wins = _mm256_cmp_pd(v, top, _CMP_GT_OQ);  /* v > top */
            best = _mm256_blendv_pd(best, _mm256_set1_pd((double)c), wins);
            second = _mm256_max_pd(_mm256_min_pd(v, top), second);
            top = _mm256_max_pd(v, top);
            row_low = _mm256_min_pd(v, row_low);
            row_high = _mm256_max_pd(v, row_high);
            row_sum = _mm256_add_pd(row_sum, v);
        }
        unordered = _mm256_or_pd(unordered, _mm256_cmp_pd(row_sum, row_sum, _CMP_UNORD_Q));
        all_low = _mm256_min_pd(row_low, all_low);
        all_high = _mm256_max_pd(row_high, all_high);
        _mm256_storeu_pd(out_top + row, top);
        _mm256_storeu_pd(out_second + row, second);
        _mm256_storeu_si256((__m256i *)(out_class + row),
                            _mm256_cvtepi32_epi64(_mm256_cvttpd_epi32(best)));
    }
    double lanes[4];
    _mm256_storeu_pd(lanes, all_low);
    for (int k = 0; k < 4; k++) *low = lanes[k] < *low ? lanes[k] : *low;
    _mm256_storeu_pd(lanes, all_high);
    for (int k = 0; k < 4; k++) *high = lanes[k] > *high ? lanes[k] : *high;
    *nan_seen |= _mm256_movemask_pd(unordered) != 0;
    return row;
}
#endif

static PyObject *
summarize(PyObject *self, PyObject *args)
{
    PyObject *proba_obj, *edges_obj, *predicted_obj, *pred1_obj, *pred2_obj;
    PyObject *buckets_obj, *classes_obj;
    double threshold;
    if (!PyArg_ParseTuple(args, "OOdOOOOO", &proba_obj, &edges_obj, &threshold,
                          &predicted_obj, &pred1_obj, &pred2_obj, &buckets_obj,
                          &classes_obj)) {
        return NULL;
    }
    Py_buffer proba, edges, predicted, pred1, pred2, buckets, classes;
    Py_buffer *views[7] = {&proba, &edges, &predicted, &pred1, &pred2, &buckets, &classes};
    int held = 0;
    PyObject *result = NULL;
    int64_t *scratch = NULL;
    if (get_buffer(proba_obj, &proba, 0, 'd', 2, "proba") < 0) goto done;
    held++;
    if (get_buffer(edges_obj, &edges, 0, 'd', 1, "edges") < 0) goto done;
    held++;
    if (get_buffer(predicted_obj, &predicted, 1, 'q', 1, "predicted") < 0) goto done;
    held++;
    if (get_buffer(pred1_obj, &pred1, 1, 'd', 1, "pred1") < 0) goto done;
    held++;
    if (get_buffer(pred2_obj, &pred2, 1, 'd', 1, "pred2") < 0) goto done;
    held++;
    if (get_buffer(buckets_obj, &buckets, 1, 'q', 1, "buckets") < 0) goto done;
    held++;
    if (get_buffer(classes_obj, &classes, 1, 'q', 1, "class_rows") < 0) goto done;
    held++;

    Py_ssize_t n_rows = proba.shape[0], n_classes = proba.shape[1];
    Py_ssize_t n_edges = edges.shape[0];
    if (n_classes < 1 || predicted.shape[0] != n_rows || pred1.shape[0] != n_rows
        || pred2.shape[0] != n_rows || buckets.shape[0] != n_edges + 1
        || classes.shape[0] != n_classes) {
        PyErr_SetString(PyExc_ValueError,
                        "summarize: output lengths must match proba's rows and columns "
                        "and edges + 1");
        goto done;
    }
    /* restrict: the outputs never overlap the inputs (the caller allocates them), so
     * the compiler may keep rows and edges in registers across the stores. */
    const double *restrict p = (const double *)proba.buf;
    const double *restrict e = (const double *)edges.buf;
    int64_t *restrict out_class = (int64_t *)predicted.buf;
    double *restrict out_top = (double *)pred1.buf;
    double *restrict out_second = (double *)pred2.buf;
    int64_t *restrict out_buckets = (int64_t *)buckets.buf;
    int64_t *restrict out_classes = (int64_t *)classes.buf;
    double low = INFINITY, high = -INFINITY;
    int nan_seen = 0;
    /* With two classes the prediction is class 1 iff p[1] > threshold (NaN: no
     * threshold, the argmax for every width). */
    int binary = n_classes == 2 && !isnan(threshold);
    double first_second = n_classes == 1 ? 0.0 : -INFINITY;

    scratch = PyMem_Calloc((size_t)(LANES * (n_edges + 1 + n_classes)), sizeof(int64_t));
    if (scratch == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    Py_ssize_t row = 0;
#ifdef SUMMARIZE_AVX2
    if (n_classes > 1 && __builtin_cpu_supports("avx2")) {
        row = summarize_avx2(p, n_rows, n_classes, first_second, out_class, out_top,
                             out_second, &low, &high, &nan_seen);
    }
#endif
    for (; row < n_rows; row++) {
        const double *r = p + row * n_classes;
        double top = r[0], second = first_second;
        Py_ssize_t best = 0;
        double row_low = r[0], row_high = r[0];
        double row_sum = r[0];
        for (Py_ssize_t c = 1; c < n_classes; c++) {
            /* Branch-free: which class wins is data, and a branch on it is mispredicted
             * on every other row. min/max compile to minsd/maxsd, the index to a cmov. */
            double v = r[c];
            best = v > top ? c : best;  /* strict: the first of tied maxima, as numpy */
            double lower = v < top ? v : top;
            second = lower > second ? lower : second;
            top = v > top ? v : top;
            row_low = v < row_low ? v : row_low;
            row_high = v > row_high ? v : row_high;
            row_sum += v;  /* NaN propagates through a sum, not through min and max */
        }
        nan_seen |= row_sum != row_sum;
        if (row_low < low) low = row_low;
        if (row_high > high) high = row_high;
        out_class[row] = best;
        out_top[row] = top;
        out_second[row] = second;
    }
    memset(out_buckets, 0, (size_t)(n_edges + 1) * sizeof(int64_t));
    memset(out_classes, 0, (size_t)n_classes * sizeof(int64_t));
    add_bucket_counts(out_top, n_rows, e, n_edges, out_buckets, scratch);
    add_class_counts(out_class, n_rows, n_classes, out_classes,
                     scratch + LANES * (n_edges + 1));
    if (binary) {  /* a second pass: a test in the loop above costs it half its speed */
        memset(out_classes, 0, 2 * sizeof(int64_t));
        for (Py_ssize_t row = 0; row < n_rows; row++) {
            int64_t one = p[2 * row + 1] > threshold;
            out_class[row] = one;
            out_classes[one]++;
        }
    }
    Py_END_ALLOW_THREADS

    result = Py_BuildValue("ddO", n_rows ? low : NAN, n_rows ? high : NAN,
                           nan_seen ? Py_True : Py_False);
done:
    PyMem_Free(scratch);
    for (int i = 0; i < held; i++) {
        PyBuffer_Release(views[i]);
    }
    return result;
}


/* Rows [start, start + n) of the block `dst` take the n rows of `src` with one memcpy,
 * when `src` is an aligned C-contiguous array of dst's dtype, dimensions and row width;
 * returns 1 if copied, 0 if not (the caller's numpy assignment handles every other
 * case). numpy's own API, not the buffer protocol: exporting a buffer costs ~400 ns. */
static int
copy_block(PyObject *dst_obj, Py_ssize_t start, PyObject *src_obj)
{
    if (!PyArray_CheckExact(dst_obj) || !PyArray_CheckExact(src_obj)) return 0;
    PyArrayObject *dst = (PyArrayObject *)dst_obj, *src = (PyArrayObject *)src_obj;
    int ndim = PyArray_NDIM(src);
    if (ndim != PyArray_NDIM(dst) || ndim < 1 || ndim > 2
        || PyArray_TYPE(src) != PyArray_TYPE(dst)
        || !PyArray_IS_C_CONTIGUOUS(src) || !PyArray_IS_C_CONTIGUOUS(dst)
        || !PyArray_ISALIGNED(src) || !PyArray_ISWRITEABLE(dst)
        || PyArray_ISBYTESWAPPED(src) || PyArray_ISBYTESWAPPED(dst)) {
        return 0;
    }
    npy_intp *src_shape = PyArray_DIMS(src), *dst_shape = PyArray_DIMS(dst);
    if ((ndim == 2 && src_shape[1] != dst_shape[1]) || start < 0
        || start + src_shape[0] > dst_shape[0]) {
        return 0;
    }
    npy_intp row_bytes = PyArray_ITEMSIZE(dst) * (ndim == 2 ? dst_shape[1] : 1);
    memcpy(PyArray_BYTES(dst) + start * row_bytes, PyArray_DATA(src),
           (size_t)PyArray_NBYTES(src));
    return 1;
}

static PyObject *
stage_rows(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    /* (start, proba_block, proba, features_block, features, labels_block, labels);
     * vectorcall: PyArg_ParseTuple would cost as much as the copies of a small batch. */
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "stage_rows takes 7 arguments");
        return NULL;
    }
    Py_ssize_t start = PyLong_AsSsize_t(args[0]);
    if (start == -1 && PyErr_Occurred()) return NULL;
    long copied = 0;
    for (int i = 0; i < 3; i++) {
        PyObject *block = args[1 + 2 * i], *batch = args[2 + 2 * i];
        if (batch != Py_None && block != Py_None) {
            copied |= (long)copy_block(block, start, batch) << i;
        }
    }
    return PyLong_FromLong(copied);
}


/* Rows per bucket of `values` (searchsorted side left over increasing `edges`, NaN in
 * the last bucket), added into `out` (int64, n_edges + 1); as summarize buckets pred1. */
static PyObject *
add_buckets(PyObject *self, PyObject *args)
{
    PyObject *edges_obj, *values_obj, *out_obj;
    if (!PyArg_ParseTuple(args, "OOO", &edges_obj, &values_obj, &out_obj)) return NULL;
    Py_buffer edges, values, out;
    if (get_buffer(edges_obj, &edges, 0, 'd', 1, "edges") < 0) return NULL;
    if (get_buffer(values_obj, &values, 0, 'd', 1, "values") < 0) {
        PyBuffer_Release(&edges);
        return NULL;
    }
    if (get_buffer(out_obj, &out, 1, 'q', 1, "out") < 0) {
        PyBuffer_Release(&edges);
        PyBuffer_Release(&values);
        return NULL;
    }
    PyObject *result = NULL;
    int64_t *scratch = NULL;
    Py_ssize_t n_edges = edges.shape[0], n = values.shape[0];
    if (out.shape[0] != n_edges + 1) {
        PyErr_SetString(PyExc_ValueError, "add_buckets: out must have len(edges) + 1 cells");
        goto done;
    }
    const double *restrict e = (const double *)edges.buf;
    const double *restrict v = (const double *)values.buf;
    int64_t *restrict o = (int64_t *)out.buf;
    scratch = PyMem_Calloc((size_t)(LANES * (n_edges + 1)), sizeof(int64_t));
    if (scratch == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    add_bucket_counts(v, n, e, n_edges, o, scratch);
    Py_END_ALLOW_THREADS
    Py_INCREF(Py_None);
    result = Py_None;
done:
    PyMem_Free(scratch);
    PyBuffer_Release(&edges);
    PyBuffer_Release(&values);
    PyBuffer_Release(&out);
    return result;
}


/* add_spread_buckets(edges, top, second, out) -> float: the buckets of top - second
 * added into `out` (int64, n_edges + 1), and their sum. */
static PyObject *
add_spread_buckets(PyObject *self, PyObject *args)
{
    PyObject *objs[4];
    if (!PyArg_ParseTuple(args, "OOOO", &objs[0], &objs[1], &objs[2], &objs[3])) return NULL;
    static const char kinds[4] = {'d', 'd', 'd', 'q'};
    static const char *names[4] = {"edges", "top", "second", "out"};
    Py_buffer views[4];
    int held = 0;
    PyObject *result = NULL;
    int64_t *scratch = NULL;
    for (; held < 4; held++) {
        if (get_buffer(objs[held], &views[held], held == 3, kinds[held], 1, names[held]) < 0) {
            goto done;
        }
    }
    Py_ssize_t n_edges = views[0].shape[0], n = views[1].shape[0];
    if (views[2].shape[0] != n || views[3].shape[0] != n_edges + 1) {
        PyErr_SetString(PyExc_ValueError, "add_spread_buckets: second must have top's "
                        "length and out len(edges) + 1 cells");
        goto done;
    }
    scratch = PyMem_Calloc((size_t)(LANES * (n_edges + 1)), sizeof(int64_t));
    if (scratch == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    double total;
    Py_BEGIN_ALLOW_THREADS
    total = add_spread_counts((const double *)views[1].buf, (const double *)views[2].buf, n,
                              (const double *)views[0].buf, n_edges,
                              (int64_t *)views[3].buf, scratch);
    Py_END_ALLOW_THREADS
    result = PyFloat_FromDouble(total);
done:
    PyMem_Free(scratch);
    for (int i = 0; i < held; i++) PyBuffer_Release(&views[i]);
    return result;
}


/* A feature value counts when |v| <= FEATURE_LIMIT (kernel.FEATURE_LIMIT): beyond, its
 * square, or a sum of a few, would overflow a counter to +Inf for good; it counts as
 * missing, like NaN and the infinities. */
#define FEATURE_LIMIT 1e150

/* One row of add_feature_sums over every column: branch-free, so the compiler
 * vectorises it across columns. `acc` holds four runs of n sums: positive, negative,
 * squares, finite values. */
AVX2_CLONES
static void
sum_row(const double *restrict r, double *restrict acc, Py_ssize_t n)
{
    double *restrict pos = acc, *restrict neg = acc + n, *restrict sq = acc + 2 * n;
    double *restrict found = acc + 3 * n;
    for (Py_ssize_t j = 0; j < n; j++) {
        double v = r[j];
        double finite = fabs(v) <= FEATURE_LIMIT ? 1.0 : 0.0;  /* false for NaN too */
        double c = finite != 0.0 ? v : 0.0;
        found[j] += finite;
        pos[j] += c > 0.0 ? c : 0.0;
        neg[j] += c < 0.0 ? c : 0.0;
        sq[j] += c * c;
    }
}

/* Four rows of add_feature_sums (r, r + width, ...): each running sum is loaded and
 * stored once per four rows, not once per row (what bounded the one-row loop), the four
 * values added pairwise first. */
AVX2_CLONES
static void
sum_rows4(const double *restrict r, Py_ssize_t width, double *restrict acc, Py_ssize_t n)
{
    double *restrict pos = acc, *restrict neg = acc + n, *restrict sq = acc + 2 * n;
    double *restrict found = acc + 3 * n;
    const double *r1 = r + width, *r2 = r + 2 * width, *r3 = r + 3 * width;
    for (Py_ssize_t j = 0; j < n; j++) {
        double v0 = r[j], v1 = r1[j], v2 = r2[j], v3 = r3[j];
        double f0 = fabs(v0) <= FEATURE_LIMIT ? 1.0 : 0.0;
        double f1 = fabs(v1) <= FEATURE_LIMIT ? 1.0 : 0.0;
        double f2 = fabs(v2) <= FEATURE_LIMIT ? 1.0 : 0.0;
        double f3 = fabs(v3) <= FEATURE_LIMIT ? 1.0 : 0.0;
        double c0 = f0 != 0.0 ? v0 : 0.0, c1 = f1 != 0.0 ? v1 : 0.0;
        double c2 = f2 != 0.0 ? v2 : 0.0, c3 = f3 != 0.0 ? v3 : 0.0;
        found[j] += (f0 + f1) + (f2 + f3);
        pos[j] += ((c0 > 0.0 ? c0 : 0.0) + (c1 > 0.0 ? c1 : 0.0))
                  + ((c2 > 0.0 ? c2 : 0.0) + (c3 > 0.0 ? c3 : 0.0));
        neg[j] += ((c0 < 0.0 ? c0 : 0.0) + (c1 < 0.0 ? c1 : 0.0))
                  + ((c2 < 0.0 ? c2 : 0.0) + (c3 < 0.0 ? c3 : 0.0));
        sq[j] += (c0 * c0 + c1 * c1) + (c2 * c2 + c3 * c3);
    }
}

/* Per column of the float64 table (n_rows, width), over the rows whose mask byte is set
 * (every row without a mask), of the columns listed (every column without a list):
 * values within +-FEATURE_LIMIT counted, the others (NaN, infinities, huge) as missing,
 * and the sums of the positive values, of minus the negative ones and of the squares,
 * the missing taken as 0.
 * Each sum runs from 0, four rows at a time, and is then added to its counter (numpy
 * sums in another order: the two agree to rounding). */
static PyObject *
add_feature_sums(PyObject *self, PyObject *args)
{
    PyObject *objs[8];
    if (!PyArg_ParseTuple(args, "OOOOOOOO", &objs[0], &objs[1], &objs[2], &objs[3],
                          &objs[4], &objs[5], &objs[6], &objs[7])) {
        return NULL;
    }
    /* table, columns or None, mask or None, values, missing, positive, negative, squares */
    static const char kinds[8] = {'d', 'q', '?', 'q', 'q', 'd', 'd', 'd'};
    static const int dims[8] = {2, 1, 1, 1, 1, 1, 1, 1};
    static const char *names[8] = {"table", "columns", "mask", "values", "missing",
                                   "positive", "negative", "squares"};
    Py_buffer views[8];
    int have[8] = {0};
    PyObject *result = NULL;
    double *partial = NULL;
    for (int i = 0; i < 8; i++) {
        if ((i == 1 || i == 2) && objs[i] == Py_None) continue;
        if (get_buffer(objs[i], &views[i], i >= 3, kinds[i], dims[i], names[i]) < 0) {
            goto done;
        }
        have[i] = 1;
    }
    Py_ssize_t n_rows = views[0].shape[0], width = views[0].shape[1];
    Py_ssize_t n_out = views[3].shape[0];
    const int64_t *cols = have[1] ? (const int64_t *)views[1].buf : NULL;
    int bad = (have[1] ? views[1].shape[0] : width) != n_out
              || (have[2] && views[2].shape[0] != n_rows);
    for (int i = 4; i < 8; i++) bad |= views[i].shape[0] != n_out;
    for (Py_ssize_t j = 0; cols && j < n_out && !bad; j++) {
        bad |= cols[j] < 0 || cols[j] >= width;
    }
    if (bad) {
        PyErr_SetString(PyExc_ValueError,
                        "add_feature_sums: columns, mask and counters do not fit the table");
        goto done;
    }
    partial = PyMem_Calloc((size_t)(4 * n_out + 1), sizeof(double));
    if (partial == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    const double *t = (const double *)views[0].buf;
    const char *mask = have[2] ? (const char *)views[2].buf : NULL;
    Py_ssize_t rows_seen = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t row = 0; row < n_rows; row++) {
        if (mask && !mask[row]) continue;
        rows_seen++;
        if (cols == NULL && mask == NULL && row + 4 <= n_rows) {
            sum_rows4(t + row * width, width, partial, n_out);
            rows_seen += 3;
            row += 3;
        }
        else if (cols == NULL) {
            sum_row(t + row * width, partial, n_out);
        }
        else {
            double *restrict pos = partial, *restrict neg = partial + n_out;
            double *restrict sq = partial + 2 * n_out, *restrict found = partial + 3 * n_out;
            const double *r = t + row * width;
            for (Py_ssize_t j = 0; j < n_out; j++) {
                double v = r[cols[j]];
                double finite = fabs(v) <= FEATURE_LIMIT ? 1.0 : 0.0;
                double c = finite != 0.0 ? v : 0.0;
                found[j] += finite;
                pos[j] += c > 0.0 ? c : 0.0;
                neg[j] += c < 0.0 ? c : 0.0;
                sq[j] += c * c;
            }
        }
    }
    int64_t *values = (int64_t *)views[3].buf, *missing = (int64_t *)views[4].buf;
    double *positive = (double *)views[5].buf, *negative = (double *)views[6].buf;
    double *squares = (double *)views[7].buf;
    for (Py_ssize_t j = 0; j < n_out; j++) {
        int64_t found = (int64_t)partial[3 * n_out + j];  /* exact below 2**53 rows */
        values[j] += found;
        missing[j] += rows_seen - found;
        positive[j] += partial[j];
        negative[j] -= partial[n_out + j];
        squares[j] += partial[2 * n_out + j];
    }
    Py_END_ALLOW_THREADS
    Py_INCREF(Py_None);
    result = Py_None;
done:
    PyMem_Free(partial);
    for (int i = 0; i < 8; i++) {
        if (have[i]) PyBuffer_Release(&views[i]);
    }
    return result;
}


/* Label counters of LifetimeCounts.add_labels in one pass: per row whose label is not
 * -1, labeled[label], labeled_by_predicted[predicted], correct[label] when they agree,
 * and confusion[label * n + predicted] (when given, n * n cells). */
static PyObject *
add_label_counts(PyObject *self, PyObject *args)
{
    PyObject *objs[6];
    if (!PyArg_ParseTuple(args, "OOOOOO", &objs[0], &objs[1], &objs[2], &objs[3],
                          &objs[4], &objs[5])) {
        return NULL;
    }
    static const char *names[6] = {"predicted", "labels", "labeled", "correct",
                                   "labeled_by_predicted", "confusion"};
    Py_buffer views[6];
    int have[6] = {0};
    PyObject *result = NULL;
    for (int i = 0; i < 6; i++) {
        if (i == 5 && objs[i] == Py_None) continue;
        if (get_buffer(objs[i], &views[i], i >= 2, 'q', 1, names[i]) < 0) goto done;
        have[i] = 1;
    }
    Py_ssize_t n_rows = views[0].shape[0], n = views[2].shape[0];
    if (views[1].shape[0] != n_rows || views[3].shape[0] != n || views[4].shape[0] != n
        || (have[5] && views[5].shape[0] != n * n)) {
        PyErr_SetString(PyExc_ValueError,
                        "add_label_counts: predicted and labels, or the counters, differ "
                        "in length");
        goto done;
    }
    const int64_t *p = (const int64_t *)views[0].buf, *l = (const int64_t *)views[1].buf;
    int64_t *labeled = (int64_t *)views[2].buf, *correct = (int64_t *)views[3].buf;
    int64_t *by_predicted = (int64_t *)views[4].buf;
    int64_t *confusion = have[5] ? (int64_t *)views[5].buf : NULL;
    /* Checked first, so that a bad row changes nothing. */
    int bad = 0;
    for (Py_ssize_t i = 0; i < n_rows; i++) {
        bad |= l[i] >= n || l[i] < -1 || (l[i] >= 0 && (p[i] < 0 || p[i] >= n));
    }
    if (bad) {
        PyErr_SetString(PyExc_ValueError,
                        "add_label_counts: a label or a predicted class is not a class index");
        goto done;
    }
    for (Py_ssize_t i = 0; i < n_rows; i++) {
        int64_t label = l[i], predicted = p[i];
        if (label < 0) continue;
        labeled[label]++;
        by_predicted[predicted]++;
        correct[label] += label == predicted;
        if (confusion) confusion[label * n + predicted]++;
    }
    Py_INCREF(Py_None);
    result = Py_None;
done:
    for (int i = 0; i < 6; i++) {
        if (have[i]) PyBuffer_Release(&views[i]);
    }
    return result;
}

/* ---- the request path's common case in one call (stage_call) ---------------------- */

static PyObject *s_clock, *s_lock, *s_locked, *s_window_end, *s_current, *s_stage_rows,
    *s_last_offer, *s_n, *s_capacity, *s_proba, *s_features, *s_labels, *s_meta,
    *s_thresholds, *s_batches, *s_n_classes, *s_plain_width, *s_index_labels,
    *s_worker_started, *s_threshold;

static int
intern_names(void)
{
#define INTERN(var, text) if ((var = PyUnicode_InternFromString(text)) == NULL) return -1
    INTERN(s_clock, "_clock");
    INTERN(s_lock, "lock");
    INTERN(s_locked, "locked");
    INTERN(s_window_end, "window_end");
    INTERN(s_current, "_current");
    INTERN(s_stage_rows, "stage_rows");
    INTERN(s_last_offer, "last_offer");
    INTERN(s_n, "n");
    INTERN(s_capacity, "capacity");
    INTERN(s_proba, "proba");
    INTERN(s_features, "features");
    INTERN(s_labels, "labels");
    INTERN(s_meta, "meta");
    INTERN(s_thresholds, "thresholds");
    INTERN(s_batches, "batches");
    INTERN(s_n_classes, "n_classes");
    INTERN(s_plain_width, "plain_width");
    INTERN(s_index_labels, "index_labels");
    INTERN(s_worker_started, "_worker_started");
    INTERN(s_threshold, "threshold");
#undef INTERN
    return 0;
}

/* An aligned, C-contiguous, native-order exact ndarray of `type` and `ndim`. */
static int
plain_array(PyObject *obj, int type, int ndim)
{
    if (!PyArray_CheckExact(obj)) return 0;
    PyArrayObject *a = (PyArrayObject *)obj;
    return PyArray_NDIM(a) == ndim && PyArray_TYPE(a) == type
           && PyArray_IS_C_CONTIGUOUS(a) && PyArray_ISALIGNED(a)
           && !PyArray_ISBYTESWAPPED(a);
}

/* The instance dictionary of `obj` (a new reference), or NULL (error cleared). The
 * fast path reads and writes the plain attributes of Staging, Stage, InputSchema and
 * ModelMonitor there: a type lookup per name cost as much as the copies. */
static PyObject *
dict_of(PyObject *obj)
{
    PyObject *dict = PyObject_GenericGetDict(obj, NULL);
    if (dict == NULL || !PyDict_CheckExact(dict)) {
        PyErr_Clear();
        Py_XDECREF(dict);
        return NULL;
    }
    return dict;
}

/* An item of `dict` as a Py_ssize_t (-2 when missing or not an int). */
static Py_ssize_t
size_item(PyObject *dict, PyObject *name)
{
    PyObject *value = PyDict_GetItemWithError(dict, name);
    if (value == NULL || !PyLong_CheckExact(value)) {
        PyErr_Clear();
        return -2;
    }
    Py_ssize_t size = PyLong_AsSsize_t(value);
    if (size == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return -2;
    }
    return size;
}

static int
set_size_item(PyObject *dict, PyObject *name, Py_ssize_t size)
{
    PyObject *value = PyLong_FromSsize_t(size);
    if (value == NULL) return -1;
    int status = PyDict_SetItem(dict, name, value);
    Py_DECREF(value);
    return status;
}

/* A block of the stage (borrowed) that the batch's rows fit: an exact writable C-order
 * ndarray of `type` with `rows` rows at least and `width` columns (ndim 2) or 1-D. */
static PyArrayObject *
block_item(PyObject *stage, PyObject *name, int type, int ndim, Py_ssize_t rows,
           Py_ssize_t width)
{
    PyObject *block = PyDict_GetItemWithError(stage, name);
    if (block == NULL) {
        PyErr_Clear();
        return NULL;
    }
    PyArrayObject *a = (PyArrayObject *)block;
    if (!plain_array(block, type, ndim) || !PyArray_ISWRITEABLE(a)
        || PyArray_DIMS(a)[0] < rows || (ndim == 2 && PyArray_DIMS(a)[1] != width)) {
        return NULL;
    }
    return a;
}

/* stage_call(state, result, args, kwargs) -> bool
 *
 * state = (monitor, staging, schema, labels_var). The decorator's whole request path
 * for the common case, what ModelMonitor.observe_common -> Intake.offer_common ->
 * Staging.put -> Stage.add do in Python: a float64 result of the learned width, the
 * call's first argument a float64 feature matrix of the learned width (or no argument),
 * the labels block holding None or int64 class indices, the current stage with room,
 * the window not due, staging's lock free. Copies the rows into the stage and returns
 * True; returns False, having changed nothing, in every other case (the caller then
 * takes the Python path, which handles it).
 *
 * No lock is taken: with the GIL held and no Python code run between the test that
 * staging's lock is free and the last store, no other thread can run, which is what
 * the lock would guarantee. Not so without a GIL: there, always False. */
/* The core of stage_call: 1 if staged, 0 if not (no error set either way). `first`
 * is the call's first positional argument (NULL: none), `keywords` whether the call
 * had keyword arguments. */
static int
stage_core(PyObject *state, PyObject *result, PyObject *first, int keywords)
{
#ifdef Py_GIL_DISABLED
    return 0;
#else
    if (keywords || !PyTuple_CheckExact(state) || PyTuple_GET_SIZE(state) != 4) return 0;
    PyObject *features = first;
    if (features != NULL && !plain_array(features, NPY_DOUBLE, 2)) return 0;
    if (!plain_array(result, NPY_DOUBLE, 2)) return 0;
    PyArrayObject *proba = (PyArrayObject *)result;
    Py_ssize_t n_rows = PyArray_DIMS(proba)[0], width = PyArray_DIMS(proba)[1];
    Py_ssize_t n_features = features ? PyArray_DIMS((PyArrayObject *)features)[1] : 0;
    if (n_rows < 1 || (features && PyArray_DIMS((PyArrayObject *)features)[0] != n_rows)) {
        return 0;
    }
    PyObject *labels = NULL;
    if (PyContextVar_Get(PyTuple_GET_ITEM(state, 3), NULL, &labels) < 0) {
        PyErr_Clear();
        return 0;
    }
    /* From here on every exit goes through `out`, which drops the references. */
    int answer = 0;
    PyObject *monitor = NULL, *staging = NULL, *schema = NULL;
    PyObject *stage = NULL, *clock = NULL, *now = NULL, *locked = NULL;
    int has_labels = labels != NULL && labels != Py_None;
    if (has_labels && (!plain_array(labels, NPY_INT64, 1)
                       || PyArray_DIMS((PyArrayObject *)labels)[0] != n_rows)) {
        goto out;
    }
    monitor = dict_of(PyTuple_GET_ITEM(state, 0));
    staging = dict_of(PyTuple_GET_ITEM(state, 1));
    schema = dict_of(PyTuple_GET_ITEM(state, 2));
    if (!monitor || !staging || !schema) goto out;
    if (size_item(schema, s_n_classes) != width
        || (features && size_item(schema, s_plain_width) != n_features)
        || (has_labels && PyDict_GetItemWithError(schema, s_index_labels) != Py_True)
        || PyDict_GetItemWithError(monitor, s_worker_started) != Py_True) {
        goto out;
    }
    PyObject *threshold_obj = PyDict_GetItemWithError(monitor, s_threshold);
    if (threshold_obj == NULL || !PyFloat_CheckExact(threshold_obj)) goto out;
    double threshold = PyFloat_AS_DOUBLE(threshold_obj);
    /* The clock may run Python code (tests pass their own): before the lock's test,
     * and nothing borrowed is kept across it. */
    clock = PyDict_GetItemWithError(staging, s_clock);
    if (clock == NULL) goto out;
    Py_INCREF(clock);
    now = PyObject_CallNoArgs(clock);
    if (now == NULL || !PyFloat_Check(now)) goto out;
    PyObject *lock = PyDict_GetItemWithError(staging, s_lock);
    if (lock == NULL) goto out;
    locked = PyObject_CallMethodNoArgs(lock, s_locked);
    if (locked != Py_False) goto out;
    /* ---- nothing below runs Python code: this thread keeps the GIL to the end ---- */
    PyObject *window_end = PyDict_GetItemWithError(staging, s_window_end);
    if (window_end == NULL || !PyFloat_Check(window_end)
        || PyFloat_AS_DOUBLE(now) >= PyFloat_AS_DOUBLE(window_end)
        || n_rows > size_item(staging, s_stage_rows)) {
        goto out;
    }
    PyObject *current = PyDict_GetItemWithError(staging, s_current);
    if (current == NULL || current == Py_None || (stage = dict_of(current)) == NULL) goto out;
    Py_ssize_t start = size_item(stage, s_n), batch = size_item(stage, s_batches);
    Py_ssize_t capacity = size_item(stage, s_capacity);
    if (start < 0 || batch < 0 || start + n_rows > capacity) goto out;
    PyArrayObject *proba_block = block_item(stage, s_proba, NPY_DOUBLE, 2, capacity, width);
    PyArrayObject *labels_block = block_item(stage, s_labels, NPY_INT64, 1, capacity, 0);
    PyArrayObject *meta = block_item(stage, s_meta, NPY_INT64, 1, batch + 1, 0);
    PyArrayObject *thresholds = block_item(stage, s_thresholds, NPY_DOUBLE, 1, batch + 1, 0);
    PyArrayObject *features_block = NULL;
    if (features != NULL) {
        features_block = block_item(stage, s_features, NPY_DOUBLE, 2, capacity, n_features);
        if (features_block == NULL) goto out;
    }
    if (!proba_block || !labels_block || !meta || !thresholds) goto out;
    /* The blocks are borrowed from the stage's dict: hold them across the stores. */
    Py_ssize_t end = start + n_rows;
    /* The stores that can fail, first: then nothing has changed. */
    PyObject *new_n = PyLong_FromSsize_t(end), *new_batches = PyLong_FromSsize_t(batch + 1);
    if (new_n == NULL || new_batches == NULL) {
        Py_XDECREF(new_n);
        Py_XDECREF(new_batches);
        goto out;
    }
    memcpy(PyArray_BYTES(proba_block) + start * width * 8, PyArray_DATA(proba),
           (size_t)(n_rows * width * 8));
    if (features != NULL) {
        memcpy(PyArray_BYTES(features_block) + start * n_features * 8,
               PyArray_DATA((PyArrayObject *)features), (size_t)(n_rows * n_features * 8));
    }
    if (has_labels) {  /* rows without labels keep the -1 of Stage.reset */
        memcpy(PyArray_BYTES(labels_block) + start * 8,
               PyArray_DATA((PyArrayObject *)labels), (size_t)(n_rows * 8));
    }
    /* Stage's record of a batch (staging._pack): end, label kind (1: indices), features. */
    ((int64_t *)PyArray_DATA(meta))[batch] =
        ((int64_t)end << 3) | ((int64_t)has_labels << 1) | (features != NULL);
    ((double *)PyArray_DATA(thresholds))[batch] = threshold;
    /* Replacing an int or a float in a dict runs no Python code (no finalizer). */
    int failed = PyDict_SetItem(stage, s_n, new_n) < 0;
    failed = failed || PyDict_SetItem(stage, s_batches, new_batches) < 0;
    failed = failed || PyDict_SetItem(staging, s_last_offer, now) < 0;
    Py_DECREF(new_n);
    Py_DECREF(new_batches);
    if (failed) {  /* out of memory inside a dict: put the stage back as it was */
        PyErr_Clear();
        for (Py_ssize_t row = start; has_labels && row < end; row++) {
            ((int64_t *)PyArray_DATA(labels_block))[row] = -1;
        }
        set_size_item(stage, s_n, start);
        set_size_item(stage, s_batches, batch);
        goto out;
    }
    answer = 1;
out:
    PyErr_Clear();
    Py_XDECREF(labels);
    Py_XDECREF(monitor);
    Py_XDECREF(staging);
    Py_XDECREF(schema);
    Py_XDECREF(stage);
    Py_XDECREF(clock);
    Py_XDECREF(now);
    Py_XDECREF(locked);
    return answer;
#endif
}

static PyObject *
stage_call(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyTuple_CheckExact(args[2])) Py_RETURN_FALSE;
    PyObject *kwargs = args[3];
    int keywords = kwargs != Py_None && (!PyDict_Check(kwargs) || PyDict_GET_SIZE(kwargs));
    PyObject *first = PyTuple_GET_SIZE(args[2]) ? PyTuple_GET_ITEM(args[2], 0) : NULL;
    if (stage_core(args[0], args[1], first, keywords)) Py_RETURN_TRUE;
    Py_RETURN_FALSE;
}

/* ---- the watched function (decorator.watch's wrapper) ------------------------------ */

/* What `monitor.watch(func)` returns where the kernel is built: calls func with the
 * caller's arguments as they came (vectorcall: no tuple, no dict), then stage_core;
 * any call stage_core declines goes to decorator._observe with a tuple and a dict, as
 * the Python wrapper does. While a monitor watches more than one function
 * (watchers.live > 1), the whole call goes to the Python wrapper `slow`, which keeps
 * the re-entrancy guard. Has a __dict__ (functools.update_wrapper fills it), binds as a
 * method in a class body, and is weakly referenceable (WatchCount). */
typedef struct {
    PyObject_HEAD
    PyObject *func, *state, *watchers, *slow, *observe, *monitor;
    PyObject *dict, *weakreflist;
    vectorcallfunc vectorcall;
} WatchedObject;

static PyObject *s_live;

static int
watched_traverse(WatchedObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->func);
    Py_VISIT(self->state);
    Py_VISIT(self->watchers);
    Py_VISIT(self->slow);
    Py_VISIT(self->observe);
    Py_VISIT(self->monitor);
    Py_VISIT(self->dict);
    return 0;
}

static int
watched_clear(WatchedObject *self)
{
    Py_CLEAR(self->func);
    Py_CLEAR(self->state);
    Py_CLEAR(self->watchers);
    Py_CLEAR(self->slow);
    Py_CLEAR(self->observe);
    Py_CLEAR(self->monitor);
    Py_CLEAR(self->dict);
    return 0;
}

static void
watched_dealloc(WatchedObject *self)
{
    PyObject_GC_UnTrack(self);
    if (self->weakreflist != NULL) PyObject_ClearWeakRefs((PyObject *)self);
    watched_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* The Python path of a call stage_core declined: _observe(monitor, result, args,
 * kwargs), which never raises an Exception; anything else it raises propagates (as
 * from the Python wrapper). Returns 0, or -1 with an error set. */
static int
watched_observe(WatchedObject *self, PyObject *result, PyObject *const *args,
                Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *tuple = PyTuple_New(nargs), *kwargs = PyDict_New(), *done = NULL;
    if (tuple == NULL || kwargs == NULL) goto end;
    for (Py_ssize_t i = 0; i < nargs; i++) {
        Py_INCREF(args[i]);
        PyTuple_SET_ITEM(tuple, i, args[i]);
    }
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t i = 0; i < nkw; i++) {
        if (PyDict_SetItem(kwargs, PyTuple_GET_ITEM(kwnames, i), args[nargs + i]) < 0) {
            goto end;
        }
    }
    done = PyObject_CallFunctionObjArgs(self->observe, self->monitor, result, tuple, kwargs,
                                        NULL);
end:
    Py_XDECREF(tuple);
    Py_XDECREF(kwargs);
    if (done != NULL) {
        Py_DECREF(done);
        return 0;
    }
    if (PyErr_ExceptionMatches(PyExc_Exception)) {  /* ours (memory): never the caller's */
        PyErr_Clear();
        return 0;
    }
    return -1;
}

static PyObject *
watched_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf,
                   PyObject *kwnames)
{
    WatchedObject *self = (WatchedObject *)callable;
    PyObject *live = PyObject_GetAttr(self->watchers, s_live);
    if (live == NULL) return NULL;
    long watching = PyLong_Check(live) ? PyLong_AsLong(live) : 2;
    Py_DECREF(live);
    if (watching > 1 || watching < 0) {  /* the re-entrancy guard: Python */
        PyErr_Clear();
        return PyObject_Vectorcall(self->slow, args, nargsf, kwnames);
    }
    PyObject *result = PyObject_Vectorcall(self->func, args, nargsf, kwnames);
    if (result == NULL) return NULL;  /* the model's own exception, untouched */
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    int keywords = kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0;
    if (stage_core(self->state, result, nargs ? args[0] : NULL, keywords)) return result;
    if (watched_observe(self, result, args, nargs, kwnames) < 0) {
        Py_DECREF(result);
        return NULL;
    }
    return result;
}

static PyObject *
watched_call(PyObject *self, PyObject *args, PyObject *kwargs)
{
    return PyVectorcall_Call(self, args, kwargs);
}

static PyObject *
watched_get(PyObject *self, PyObject *obj, PyObject *type)
{
    if (obj == NULL || obj == Py_None) {
        Py_INCREF(self);
        return self;
    }
    return PyMethod_New(self, obj);
}

/* Watched(func, state, watchers, slow, observe) */
static PyObject *
watched_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *func, *state, *watchers, *slow, *observe;
    if ((kwds && PyDict_GET_SIZE(kwds))
        || !PyArg_ParseTuple(args, "OO!OOO:Watched", &func, &PyTuple_Type, &state,
                             &watchers, &slow, &observe)) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "Watched takes 5 arguments");
        return NULL;
    }
    if (PyTuple_GET_SIZE(state) != 4) {
        PyErr_SetString(PyExc_ValueError, "Watched: state is (monitor, staging, schema, var)");
        return NULL;
    }
    WatchedObject *self = (WatchedObject *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    PyObject *parts[6] = {func, state, watchers, slow, observe, PyTuple_GET_ITEM(state, 0)};
    PyObject **slots[6] = {&self->func, &self->state, &self->watchers, &self->slow,
                           &self->observe, &self->monitor};
    for (int i = 0; i < 6; i++) {
        Py_INCREF(parts[i]);
        *slots[i] = parts[i];
    }
    self->vectorcall = watched_vectorcall;
    return (PyObject *)self;
}

static PyGetSetDef watched_getset[] = {
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL}
};

static PyTypeObject WatchedType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mlwatcher_exporter._kernel.Watched",
    .tp_basicsize = sizeof(WatchedObject),
    .tp_dealloc = (destructor)watched_dealloc,
    .tp_vectorcall_offset = offsetof(WatchedObject, vectorcall),
    .tp_call = watched_call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL
                | Py_TPFLAGS_METHOD_DESCRIPTOR,
    .tp_doc = "Watched(func, state, watchers, slow, observe): func, monitored.",
    .tp_traverse = (traverseproc)watched_traverse,
    .tp_clear = (inquiry)watched_clear,
    .tp_weaklistoffset = offsetof(WatchedObject, weakreflist),
    .tp_getset = watched_getset,
    .tp_descr_get = watched_get,
    .tp_dictoffset = offsetof(WatchedObject, dict),
    .tp_new = watched_new,
};

/* ---- the labels block (decorator.LabelsBlock's compiled base) --------------------- */

/* What `with monitor.labels(y):` costs on every monitored call: a Python class's
 * __init__, __enter__ and __exit__ frames are three quarters of it. The same object
 * in C: the context variable, what it holds inside the block, the reset token. */
typedef struct {
    PyObject_HEAD
    PyObject *var;
    PyObject *labels;
    PyObject *token;
} BlockObject;

static int
block_traverse(BlockObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->var);
    Py_VISIT(self->labels);
    Py_VISIT(self->token);
    return 0;
}

static int
block_clear(BlockObject *self)
{
    Py_CLEAR(self->var);
    Py_CLEAR(self->labels);
    Py_CLEAR(self->token);
    return 0;
}

static void
block_dealloc(BlockObject *self)
{
    PyObject_GC_UnTrack(self);
    block_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Set once by decorator.py (configure_labels_block): LabelsWithIds, and the function
 * that makes a decorator of a block (contextlib.ContextDecorator's job). */
static PyObject *with_ids_type, *decorate_hook;

static int
block_fill(BlockObject *self, PyObject *var, PyObject *labels, PyObject *ids)
{
    if (!PyContextVar_CheckExact(var)) {
        PyErr_SetString(PyExc_TypeError, "LabelsBlock: var must be a ContextVar");
        return -1;
    }
    PyObject *held;
    if (ids == NULL || ids == Py_None) {
        Py_INCREF(labels);
        held = labels;
    }
    else {
        if (with_ids_type == NULL) {
            PyErr_SetString(PyExc_RuntimeError, "LabelsBlock: configure_labels_block first");
            return -1;
        }
        held = PyObject_CallFunctionObjArgs(with_ids_type, labels, ids, NULL);
        if (held == NULL) return -1;
    }
    Py_INCREF(var);
    Py_XSETREF(self->var, var);
    Py_XSETREF(self->labels, held);
    Py_CLEAR(self->token);
    return 0;
}

/* LabelsBlock(var, labels, ids=None): with ids, the block holds
 * LabelsWithIds(labels, ids). */
static int
block_init(BlockObject *self, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {"var", "labels", "ids", NULL};
    PyObject *var, *labels, *ids = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|O:LabelsBlock", keywords, &var,
                                     &labels, &ids)) {
        return -1;
    }
    return block_fill(self, var, labels, ids);
}

static PyTypeObject BlockType;

/* The same as a call of the type, without an argument tuple (the block is made on
 * every monitored call). */
static PyObject *
block_vectorcall(PyObject *type, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    PyObject *ids = nargs == 3 ? args[2] : NULL;
    int ok = nargs == 2 || nargs == 3;
    if (ok && nkw == 1 && nargs == 2) {
        ok = PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "ids") == 0;
        ids = args[2];
    }
    else if (nkw) {
        ok = 0;
    }
    if (!ok || type != (PyObject *)&BlockType) {  /* anything else: the general way */
        PyObject *tuple = PyTuple_New(nargs);
        if (tuple == NULL) return NULL;
        for (Py_ssize_t i = 0; i < nargs; i++) {
            Py_INCREF(args[i]);
            PyTuple_SET_ITEM(tuple, i, args[i]);
        }
        PyObject *kwargs = NULL;
        if (nkw) {
            kwargs = PyDict_New();
            for (Py_ssize_t i = 0; kwargs && i < nkw; i++) {
                if (PyDict_SetItem(kwargs, PyTuple_GET_ITEM(kwnames, i), args[nargs + i]) < 0) {
                    Py_CLEAR(kwargs);
                }
            }
            if (kwargs == NULL) {
                Py_DECREF(tuple);
                return NULL;
            }
        }
        PyObject *result = PyType_Type.tp_call(type, tuple, kwargs);
        Py_DECREF(tuple);
        Py_XDECREF(kwargs);
        return result;
    }
    BlockObject *self = (BlockObject *)BlockType.tp_alloc(&BlockType, 0);
    if (self == NULL) return NULL;
    if (block_fill(self, args[0], args[1], ids) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

/* block(func): a function that runs func inside a fresh copy of the block, as
 * contextlib.ContextDecorator makes one (the hook is decorator.py's). */
static PyObject *
block_call(PyObject *self, PyObject *args, PyObject *kwds)
{
    if (decorate_hook == NULL) {
        PyErr_SetString(PyExc_TypeError, "LabelsBlock is not callable before "
                                         "configure_labels_block");
        return NULL;
    }
    PyObject *func;
    if ((kwds && PyDict_GET_SIZE(kwds)) || !PyArg_ParseTuple(args, "O:LabelsBlock", &func)) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_TypeError, "LabelsBlock takes one function to decorate");
        }
        return NULL;
    }
    return PyObject_CallFunctionObjArgs(decorate_hook, self, func, NULL);
}

static PyObject *
configure_labels_block(PyObject *module, PyObject *args)
{
    PyObject *with_ids, *decorate;
    if (!PyArg_ParseTuple(args, "OO", &with_ids, &decorate)) return NULL;
    Py_INCREF(with_ids);
    Py_XSETREF(with_ids_type, with_ids);
    Py_INCREF(decorate);
    Py_XSETREF(decorate_hook, decorate);
    Py_RETURN_NONE;
}

static PyObject *
block_enter(BlockObject *self, PyObject *unused)
{
    if (self->var == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "LabelsBlock: not initialised");
        return NULL;
    }
    PyObject *token = PyContextVar_Set(self->var, self->labels ? self->labels : Py_None);
    if (token == NULL) return NULL;
    Py_XSETREF(self->token, token);
    Py_RETURN_NONE;
}

static PyObject *
block_exit(BlockObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (self->token != NULL) {
        PyObject *token = self->token;
        self->token = NULL;
        int status = PyContextVar_Reset(self->var, token);
        Py_DECREF(token);
        if (status < 0) return NULL;
    }
    Py_RETURN_FALSE;  /* never swallows the block's exception */
}

/* contextlib.ContextDecorator's hook: a fresh block per decorated call (reentrancy). */
static PyObject *
block_recreate(BlockObject *self, PyObject *unused)
{
    PyTypeObject *type = Py_TYPE(self);
    BlockObject *other = (BlockObject *)type->tp_alloc(type, 0);
    if (other == NULL) return NULL;
    Py_XINCREF(self->var);
    other->var = self->var;
    Py_XINCREF(self->labels);
    other->labels = self->labels;
    return (PyObject *)other;
}

static PyMethodDef block_methods[] = {
    {"__enter__", (PyCFunction)block_enter, METH_NOARGS, "Set the labels for the block."},
    {"__exit__", (PyCFunction)(void (*)(void))block_exit, METH_FASTCALL,
     "Reset the labels; never suppresses an exception."},
    {"_recreate_cm", (PyCFunction)block_recreate, METH_NOARGS,
     "A fresh block holding the same (contextlib.ContextDecorator)."},
    {NULL, NULL, 0, NULL}
};

static PyMemberDef block_members[] = {
    {"_var", T_OBJECT, offsetof(BlockObject, var), READONLY, "The context variable."},
    {"_labels", T_OBJECT, offsetof(BlockObject, labels), READONLY, "What the block holds."},
    {NULL, 0, 0, 0, NULL}
};

static PyTypeObject BlockType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mlwatcher_exporter._kernel.LabelsBlock",
    .tp_basicsize = sizeof(BlockObject),
    .tp_dealloc = (destructor)block_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "LabelsBlock(var, labels, ids=None): sets var to labels inside a with block.",
    .tp_traverse = (traverseproc)block_traverse,
    .tp_clear = (inquiry)block_clear,
    .tp_methods = block_methods,
    .tp_members = block_members,
    .tp_init = (initproc)block_init,
    .tp_new = PyType_GenericNew,
    .tp_call = block_call,
    .tp_vectorcall = block_vectorcall,
};

static PyMethodDef kernel_methods[] = {
    {"summarize", summarize, METH_VARARGS,
     "summarize(proba, edges, threshold, predicted, pred1, pred2, buckets, class_rows)"
     " -> (min, max, nan_seen)\n\n"
     "Fill, per row of the C-contiguous float64 matrix proba, the predicted class, the\n"
     "top and second probabilities; count rows per bucket of pred1 (searchsorted side\n"
     "left over edges) and per predicted class. With two columns and a threshold that\n"
     "is not NaN, the predicted class is 1 iff p[1] > threshold."},
    {"stage_rows", (PyCFunction)(void (*)(void))stage_rows, METH_FASTCALL,
     "stage_rows(start, proba_block, proba, features_block, features, labels_block,"
     " labels) -> copied\n\n"
     "Copy each batch array into rows start.. of its block with one memcpy where it is\n"
     "C-contiguous float64 (int64 for labels) of the block's width; returns a bit per\n"
     "pair copied (1: proba, 2: features, 4: labels), the others are the caller's."},
    {"add_buckets", add_buckets, METH_VARARGS,
     "add_buckets(edges, values, out)\n\n"
     "Add to out (int64, len(edges) + 1) the rows of values per bucket:\n"
     "searchsorted(edges, values, side='left'), NaN in the last."},
    {"add_spread_buckets", add_spread_buckets, METH_VARARGS,
     "add_spread_buckets(edges, top, second, out) -> sum of top - second"},
    {"add_feature_sums", add_feature_sums, METH_VARARGS,
     "add_feature_sums(table, columns, mask, values, missing, positive, negative, squares)"
     "\n\nAdd, per listed column of the float64 table (all without columns) over the\n"
     "rows whose mask is set (all without a mask): finite values, missing values, sums\n"
     "of the positive values, of minus the negative ones and of the squares."},
    {"add_label_counts", add_label_counts, METH_VARARGS,
     "add_label_counts(predicted, labels, labeled, correct, labeled_by_predicted, "
     "confusion)\n\n"
     "Add the label counters of the rows whose label is not -1 (int64 arrays; confusion,\n"
     "n * n cells true-major, or None)."},
    {"stage_call", (PyCFunction)(void (*)(void))stage_call, METH_FASTCALL,
     "stage_call(state, result, args, kwargs) -> bool\n\n"
     "The decorator's request path for the common case in one call: stage a\n"
     "float64 result, the float64 features of args[0] and the int64 labels of the\n"
     "labels block into staging's current stage; False, having changed nothing, for\n"
     "anything else. state = (monitor, staging, schema, labels_var)."},
    {"configure_labels_block", configure_labels_block, METH_VARARGS,
     "configure_labels_block(with_ids, decorate)\n\n"
     "What a LabelsBlock with ids holds (with_ids(labels, ids)), and decorate(block,\n"
     "func), what calling a block returns."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef kernel_module = {
    PyModuleDef_HEAD_INIT, "_kernel",
    "Compiled one-pass summary of probability rows (see kernel.py).", -1, kernel_methods,
};

PyMODINIT_FUNC
PyInit__kernel(void)
{
    import_array();
    if (intern_names() < 0) return NULL;
    if (PyType_Ready(&BlockType) < 0) return NULL;
    if (PyType_Ready(&WatchedType) < 0) return NULL;
    if ((s_live = PyUnicode_InternFromString("live")) == NULL) return NULL;
    PyObject *module = PyModule_Create(&kernel_module);
    if (module == NULL) return NULL;
    Py_INCREF(&BlockType);
    if (PyModule_AddObject(module, "LabelsBlock", (PyObject *)&BlockType) < 0) {
        Py_DECREF(&BlockType);
        Py_DECREF(module);
        return NULL;
    }
    Py_INCREF(&WatchedType);
    if (PyModule_AddObject(module, "Watched", (PyObject *)&WatchedType) < 0) {
        Py_DECREF(&WatchedType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
