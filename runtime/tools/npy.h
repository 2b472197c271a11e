/* npy.h: NumPy's .npy files (format versions 1, 2 and 3), read into float32 and written from
 * float32, for the kiln-run tool.
 *
 * A file: the magic "\x93NUMPY", u8 major, u8 minor, a header length (u16 little-endian for
 * version 1, u32 for 2 and 3), the header (an ASCII/UTF-8 Python dict literal such as
 * {'descr': '<f4', 'fortran_order': False, 'shape': (1, 512), } padded with spaces and ended by
 * a newline), then the data in C order.
 */
#ifndef KILN_NPY_H
#define KILN_NPY_H

#include <stddef.h>
#include <stdint.h>

#define NPY_MAX_DIMS 8

typedef struct npy_array {
    int ndim;
    int64_t dims[NPY_MAX_DIMS];
    float *data; /* malloc'd, count elements */
    size_t count;
} npy_array;

/* Parse a whole file's bytes. Accepts little-endian or byte-order-free dtypes: f2 f4 f8,
 * i1 i2 i4 i8, u1 u2 u4 u8, b1 (converted to float32); C order only. Returns 0, or -1 with a
 * message in err. */
int npy_parse(const uint8_t *buf, size_t len, npy_array *out, char *err, size_t err_size);
int npy_load(const char *path, npy_array *out, char *err, size_t err_size);
/* Write float32 data as a version 1 file. Returns 0 or -1 (errno set). */
int npy_save(const char *path, const float *data, const int64_t *dims, int ndim);
void npy_free(npy_array *a);

#endif /* KILN_NPY_H */
