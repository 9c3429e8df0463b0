/*
 * C reference of the mapping table lookup. Keep in step with
 * Sources/MATPacket/MappingSlots*.swift: the benchmark stops unless a table built here is
 * byte-identical to the Swift one, and then times this file's lookup over the Swift table's
 * slot array, so both sides must keep the same algorithm and the same memory layout.
 */
#include "reference_table.h"

#include <stdlib.h>
#include <string.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#define MAT_MULTIPLIER  UINT64_C(0x9E3779B97F4A7C15)
#define MAT_MULTIPLIER2 UINT64_C(0xBF58476D1CE4E5B9)

static unsigned shift_for(size_t capacity) {
    return 64u - (unsigned)__builtin_ctzll((unsigned long long)capacity);
}

static inline size_t home4(const mat_ref_table4 *table, uint32_t key) {
    return (size_t)((((uint64_t)key ^ table->seed) * MAT_MULTIPLIER) >> table->shift);
}

static inline uint32_t lookup4(const mat_ref_table4 *table, uint32_t key) {
    const uint64_t *slots = table->slots;
    size_t mask = table->mask;
    size_t index = home4(table, key);
    for (;;) {
        uint64_t slot = slots[index];
        uint32_t slot_key = (uint32_t)slot;
        if (slot_key == 0) return 0;
        if (slot_key == key) return (uint32_t)(slot >> 32);
        index = (index + 1) & mask;
    }
}

mat_ref_table4 *mat_ref_table4_create(size_t capacity, uint64_t seed,
                                      const uint32_t *keys, const uint32_t *values, size_t count) {
    if (capacity < 2 || (capacity & (capacity - 1)) != 0 || count >= capacity) return NULL;
    mat_ref_table4 *table = malloc(sizeof *table);
    if (!table) return NULL;
    table->slots = calloc(capacity, sizeof(uint64_t));
    if (!table->slots) { free(table); return NULL; }
    table->mask = capacity - 1;
    table->shift = shift_for(capacity);
    table->seed = seed;
    for (size_t i = 0; i < count; i++) {
        size_t index = home4(table, keys[i]);
        while (table->slots[index] != 0) index = (index + 1) & table->mask;
        table->slots[index] = (uint64_t)values[i] << 32 | keys[i];
    }
    return table;
}

void mat_ref_table4_destroy(mat_ref_table4 *table) {
    if (!table) return;
    free(table->slots);
    free(table);
}

uint32_t mat_ref_table4_lookup(const mat_ref_table4 *table, uint32_t key) {
    return lookup4(table, key);
}

uint64_t mat_ref_table4_lookup_batch(const mat_ref_table4 *table, const uint32_t *keys, size_t count) {
    uint64_t sum = 0;
    for (size_t i = 0; i < count; i++) sum += lookup4(table, keys[i]);
    return sum;
}

static inline size_t home6(const mat_ref_table6 *table, uint64_t high, uint64_t low) {
    uint64_t x = (low ^ table->seed) * MAT_MULTIPLIER;
    x ^= high;
    x ^= x >> 32;
    x *= MAT_MULTIPLIER2;
    return (size_t)(x >> table->shift);
}

static inline void lookup6(const mat_ref_table6 *table, uint64_t high, uint64_t low,
                           uint64_t *out_high, uint64_t *out_low) {
    const uint64_t *slots = table->slots;
    size_t mask = table->mask;
    size_t index = home6(table, high, low);
    for (;;) {
        const uint64_t *slot = slots + (index << 2);
        uint64_t key_high = slot[0], key_low = slot[1];
        if ((key_high | key_low) == 0) {
            *out_high = 0;
            *out_low = 0;
            return;
        }
        if (((key_high ^ high) | (key_low ^ low)) == 0) {
            *out_high = slot[2];
            *out_low = slot[3];
            return;
        }
        index = (index + 1) & mask;
    }
}

mat_ref_table6 *mat_ref_table6_create(size_t capacity, uint64_t seed,
                                      const uint64_t *keys, const uint64_t *values, size_t count) {
    if (capacity < 2 || (capacity & (capacity - 1)) != 0 || count >= capacity) return NULL;
    mat_ref_table6 *table = malloc(sizeof *table);
    if (!table) return NULL;
    table->slots = aligned_alloc(64, capacity * 32);
    if (!table->slots) { free(table); return NULL; }
    memset(table->slots, 0, capacity * 32);
    table->mask = capacity - 1;
    table->shift = shift_for(capacity);
    table->seed = seed;
    for (size_t i = 0; i < count; i++) {
        uint64_t high = keys[2 * i], low = keys[2 * i + 1];
        size_t index = home6(table, high, low);
        for (;;) {
            uint64_t *slot = table->slots + (index << 2);
            if ((slot[0] | slot[1]) == 0) {
                slot[0] = high;
                slot[1] = low;
                slot[2] = values[2 * i];
                slot[3] = values[2 * i + 1];
                break;
            }
            index = (index + 1) & table->mask;
        }
    }
    return table;
}

void mat_ref_table6_destroy(mat_ref_table6 *table) {
    if (!table) return;
    free(table->slots);
    free(table);
}

void mat_ref_table6_lookup(const mat_ref_table6 *table, uint64_t high, uint64_t low, uint64_t out[2]) {
    lookup6(table, high, low, &out[0], &out[1]);
}

uint64_t mat_ref_table6_lookup_batch(const mat_ref_table6 *table, const uint64_t *keys, size_t count) {
    uint64_t sum = 0;
    for (size_t i = 0; i < count; i++) {
        uint64_t high, low;
        lookup6(table, keys[2 * i], keys[2 * i + 1], &high, &low);
        sum += high + low;
    }
    return sum;
}

size_t mat_ref_heap_bytes_in_use(void) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
    struct mallinfo2 info = mallinfo2();
    return info.uordblks + info.hblkhd;
#else
    return 0;
#endif
}

void mat_ref_trim_heap(void) {
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
}
