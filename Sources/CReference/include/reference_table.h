/*
 * C reference of the mapping table's lookup (Sources/MATPacket/MappingSlots*.swift):
 * same hash, same slot layout, same linear probing. Used only by the benchmark, which
 * builds a table here from the same keys and seeds as the Swift one, checks that the two
 * slot arrays are byte-identical, and times both lookups over the Swift table's array
 * (a copy of this header with `slots` pointing there).
 */
#ifndef MAT_REFERENCE_TABLE_H
#define MAT_REFERENCE_TABLE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* IPv4 table: `capacity` slots of uint64_t, key in bits 0-31, value in bits 32-63; 0 = empty. */
typedef struct mat_ref_table4 {
    uint64_t *slots;
    size_t mask;       /* capacity - 1 */
    unsigned shift;    /* 64 - log2(capacity) */
    uint64_t seed;
} mat_ref_table4;

/* IPv6 table: `capacity` slots of four uint64_t (key high, key low, value high, value low),
 * 64-byte aligned; all zero = empty. */
typedef struct mat_ref_table6 {
    uint64_t *slots;
    size_t mask;
    unsigned shift;
    uint64_t seed;
} mat_ref_table6;

/* Builds a table of `capacity` slots (a power of two, larger than `count`) hashed with
 * `seed`, holding keys[i] -> values[i]. Keys must be distinct and non-zero.
 * Returns NULL when memory is short. */
mat_ref_table4 *mat_ref_table4_create(size_t capacity, uint64_t seed,
                                      const uint32_t *keys, const uint32_t *values, size_t count);
void mat_ref_table4_destroy(mat_ref_table4 *table);
/* The value stored for `key`, or 0 when absent. */
uint32_t mat_ref_table4_lookup(const mat_ref_table4 *table, uint32_t key);
/* Looks up keys[0..<count] and returns the wrapping sum of the values found (0 for misses). */
uint64_t mat_ref_table4_lookup_batch(const mat_ref_table4 *table, const uint32_t *keys, size_t count);

/* As above for IPv6; keys and values are arrays of `count` (high, low) pairs, i.e.
 * 2 * count uint64_t in host order. */
mat_ref_table6 *mat_ref_table6_create(size_t capacity, uint64_t seed,
                                      const uint64_t *keys, const uint64_t *values, size_t count);
void mat_ref_table6_destroy(mat_ref_table6 *table);
/* Writes the value for (high, low) into out[0], out[1]; both 0 when absent. */
void mat_ref_table6_lookup(const mat_ref_table6 *table, uint64_t high, uint64_t low, uint64_t out[2]);
/* Looks up `count` (high, low) keys and returns the wrapping sum of value high + value low. */
uint64_t mat_ref_table6_lookup_batch(const mat_ref_table6 *table, const uint64_t *keys, size_t count);

/* Heap bytes in use according to the C library (glibc: mallinfo2 small chunks plus
 * mmap-served blocks), so the benchmark can report measured table memory; 0 elsewhere. */
size_t mat_ref_heap_bytes_in_use(void);
/* Returns free heap pages to the kernel (glibc: malloc_trim(0)), so the resident set the
 * benchmark reads counts live memory only; a no-op elsewhere. */
void mat_ref_trim_heap(void);

#ifdef __cplusplus
}
#endif

#endif
