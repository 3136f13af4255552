/* tsl_matvec_s4nl_neon.c -- the neon paths of tsl_matvec_s4nl.c. PLACEHOLDER: covers no group yet
 * (the portable tail runs them all); its SIMD path is being written. */
#include "tsl_matvec_s4nl_isa.h"

#if defined(TSL_NEON_ANY)
int32_t tsl_s4nl_acc_neon(TSL_S4NL_ACC_ARGS)
{
    (void)x; (void)w; (void)kv; (void)gs; (void)acc; (void)N; (void)K;
    return 0;
}
#endif
