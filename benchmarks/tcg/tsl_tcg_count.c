/* tsl_tcg_count.c -- a QEMU TCG plugin that counts executed guest instructions per guest PC.
 *
 *   gcc -shared -fPIC -O2 -o tsl_tcg_count.so tsl_tcg_count.c      (benchmarks/tcg/tcgcount.py builds it)
 *   qemu-system-arm ... -plugin ./tsl_tcg_count.so,out=counts.txt[,mark=0x1234]
 *   qemu-aarch64 -plugin ./tsl_tcg_count.so,out=counts.txt prog          (user mode: per thread = vcpu)
 *
 * Every translated block (TB) gets a record of its instructions' addresses and an exec callback that
 * adds one to the record's count for the executing vcpu; so an instruction counts once each time the
 * block it is in starts (a block left early by an exception is counted whole, which bare-metal
 * model code does not do). mark=ADDR: counting starts off and flips at each execution of the
 * block at ADDR (a marker function called before and after the region of interest).
 * At exit the file `out` gets "version <api>", then per executed instruction and vcpu a line
 * "<pc hex> <vcpu> <count>", then "total <instructions>".
 *
 * Debian's qemu ships no qemu-plugin.h: the few declarations below are those of QEMU 7.2's API,
 * version 1 (qemu_info_t carries the range of versions the running QEMU accepts; checked at install). */
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))
#define TSL_PLUGIN_API 1
#define MAX_VCPUS 16   /* vcpus (user mode: threads) past the last share its count */

typedef uint64_t qemu_plugin_id_t;
typedef struct {
    const char *target_name;
    struct { int min; int cur; } version;
    bool system_emulation;
    union { struct { int smp_vcpus; int max_vcpus; } system; };
} qemu_info_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, qemu_plugin_vcpu_udata_cb_t cb,
                                          enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);

EXPORT int qemu_plugin_version = TSL_PLUGIN_API;

/* One translation of a block: its instructions' addresses and executions per vcpu. */
typedef struct block {
    struct block *next;
    uint64_t count[MAX_VCPUS];
    size_t n;
    uint64_t pc[];
} block;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static block *blocks;
static char out_path[4096];
static uint64_t mark;
static volatile int counting = 1;

static void on_exec(unsigned int vcpu, void *udata)
{
    block *b = udata;
    if (mark && b->pc[0] == mark) counting = !counting;
    if (counting) b->count[vcpu < MAX_VCPUS ? vcpu : MAX_VCPUS - 1]++;
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    const size_t n = qemu_plugin_tb_n_insns(tb);
    block *b = calloc(1, sizeof *b + n * sizeof(uint64_t));
    if (!b) abort();
    b->n = n;
    for (size_t i = 0; i < n; i++) b->pc[i] = qemu_plugin_insn_vaddr(qemu_plugin_tb_get_insn(tb, i));
    pthread_mutex_lock(&lock);
    b->next = blocks;
    blocks = b;
    pthread_mutex_unlock(&lock);
    qemu_plugin_register_vcpu_tb_exec_cb(tb, on_exec, QEMU_PLUGIN_CB_NO_REGS, b);
}

typedef struct { uint64_t pc, count; uint32_t vcpu; } row;

static int by_pc(const void *a, const void *b)
{
    const row *x = a, *y = b;
    if (x->pc != y->pc) return x->pc < y->pc ? -1 : 1;
    return x->vcpu < y->vcpu ? -1 : x->vcpu > y->vcpu;
}

static void write_counts(qemu_plugin_id_t id, void *udata)
{
    (void)id; (void)udata;
    size_t n = 0, m = 0;
    for (block *b = blocks; b; b = b->next)
        for (uint32_t v = 0; v < MAX_VCPUS; v++) n += b->count[v] ? b->n : 0;
    row *r = malloc((n ? n : 1) * sizeof *r);
    if (!r) abort();
    for (block *b = blocks; b; b = b->next)
        for (uint32_t v = 0; v < MAX_VCPUS; v++)
            if (b->count[v])
                for (size_t i = 0; i < b->n; i++) r[m++] = (row){b->pc[i], b->count[v], v};
    qsort(r, m, sizeof *r, by_pc);
    FILE *f = fopen(out_path, "w");
    if (!f) {
        fprintf(stderr, "tsl_tcg_count: cannot write %s\n", out_path);
        free(r);
        return;
    }
    fprintf(f, "version %d\n", TSL_PLUGIN_API);
    uint64_t total = 0;
    for (size_t i = 0; i < m;) {   /* a PC translated more than once: one line per vcpu */
        size_t j = i;
        uint64_t c = 0;
        for (; j < m && r[j].pc == r[i].pc && r[j].vcpu == r[i].vcpu; j++) c += r[j].count;
        fprintf(f, "%" PRIx64 " %u %" PRIu64 "\n", r[i].pc, r[i].vcpu, c);
        total += c;
        i = j;
    }
    fprintf(f, "total %" PRIu64 "\n", total);
    fclose(f);
    free(r);
}

EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    if (info->version.min > TSL_PLUGIN_API || info->version.cur < TSL_PLUGIN_API) {
        fprintf(stderr, "tsl_tcg_count: built for plugin API %d, this QEMU takes %d..%d\n",
                TSL_PLUGIN_API, info->version.min, info->version.cur);
        return -1;
    }
    for (int i = 0; i < argc; i++) {
        if (!strncmp(argv[i], "out=", 4) && strlen(argv[i] + 4) < sizeof out_path) {
            strcpy(out_path, argv[i] + 4);
        } else if (!strncmp(argv[i], "mark=", 5)) {
            mark = strtoull(argv[i] + 5, NULL, 0);
            counting = 0;
        } else {
            fprintf(stderr, "tsl_tcg_count: arguments are out=FILE and mark=ADDR, not %s\n", argv[i]);
            return -1;
        }
    }
    if (!out_path[0]) {
        fprintf(stderr, "tsl_tcg_count: needs out=FILE\n");
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, write_counts, NULL);
    return 0;
}
