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
    else { /* a 64-bit signed integer: 'q', or 'l' where long is 64 bits */
        ok = (format[0] == 'q' || format[0] == 'l') && format[1] == '\0'
             && view->itemsize == 8;
    }
    if (!ok || view->ndim != ndim) {
        PyErr_Format(PyExc_TypeError,
                     "%s has format %s and %d dimensions, must be %s with %d",
                     name, view->format ? view->format : "B", view->ndim,
                     kind == 'd' ? "float64" : "int64", ndim);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

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
    Py_ssize_t search_start = 1;  /* the largest power of two <= n_edges */
    while (search_start * 2 <= n_edges) search_start *= 2;

    Py_BEGIN_ALLOW_THREADS
    memset(out_buckets, 0, (size_t)(n_edges + 1) * sizeof(int64_t));
    memset(out_classes, 0, (size_t)n_classes * sizeof(int64_t));
    for (Py_ssize_t row = 0; row < n_rows; row++) {
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
        out_classes[best]++;
        /* numpy.searchsorted(edges, top, side="left"): the number of edges strictly
         * below top, by a binary search without branches. */
        Py_ssize_t lo = 0;
        for (Py_ssize_t half = search_start; half > 0; half >>= 1) {
            lo = lo + half <= n_edges && e[lo + half - 1] < top ? lo + half : lo;
        }
        out_buckets[top != top ? n_edges : lo]++;  /* as numpy sorts NaN last */
    }
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
    return PyModule_Create(&kernel_module);
}
