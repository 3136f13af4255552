/* tsl_fwht.h -- the randomized block Walsh-Hadamard rotation of an activation (float32).
 *
 * Mirror: tinyslm/numerics.py fwht (the specification). x [n] -> H D x in place:
 *   D       the signs of a packed bit table, signs [ceil(n / 8)]: bit i % 8 of byte i / 8 set negates x[i]
 *   H       block-diagonal unnormalized Sylvester Hadamard, block a power of two dividing n
 * The weights reading x were folded by the compiler to W D H / block (tinyslm/quantize.py rotate_cols).
 * Float32 add and subtract only, in a fixed order: stage h = 1, 2, ..., block / 2 over the whole
 * vector, butterfly (x[j], x[j + h]) <- (x[j] + x[j + h], x[j] - x[j + h]) for j with bit h clear.
 */
#ifndef TSL_FWHT_H
#define TSL_FWHT_H
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void tsl_fwht_f32(float *x, int32_t n, int32_t block, const uint8_t *signs);

#ifdef __cplusplus
}
#endif
#endif
